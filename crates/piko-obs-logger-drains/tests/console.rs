//! `start_console`: the start-up's console output on the process-wide hub, as a part of
//! the program's stack, and none when the program owns stdout already (one binary: the
//! hub and stdout are process-wide).

use std::time::Duration;

use piko_obs_lifecycle::Lifecycle;
use piko_obs_logger::Directives;
use piko_obs_logger::global::hub;
use piko_obs_logger_drains::{ConsoleFormat, add_json_output, start_console};

fn outputs() -> Vec<String> {
    hub().outputs().into_iter().map(|o| o.name).collect()
}

#[test]
fn the_console_is_a_part_until_the_program_takes_stdout() {
    let info: Directives = "info".parse().unwrap();
    let console = start_console(ConsoleFormat::Pretty, info.clone())
        .unwrap()
        .expect("stdout is free");
    assert_eq!(console.part(), "console output");
    assert_eq!(outputs(), ["console"]);

    // The program's stdout output replaces the console; a later start-up adds none.
    add_json_output().unwrap();
    assert!(
        !outputs().contains(&"console".to_string()),
        "{:?}",
        outputs()
    );
    assert!(start_console(ConsoleFormat::Json, info).unwrap().is_none());

    // The replaced console's part still shuts down cleanly.
    console.shutdown_within(Duration::from_secs(1)).unwrap();
    hub().shutdown(Duration::from_secs(1)).unwrap();
}
