//! The web console (`--console`): its login and read-only API over raw HTTP (`api.rs`), and
//! the page itself in headless Chromium driven over WebDriver (`browser.rs`).

mod api;
mod browser;
mod webdriver;
