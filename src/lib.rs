//! latchkey: a self-hosted authentication server whose strength is two-factor authentication and
//! getting back into an account when the second factor is lost.
//!
//! The product lives in `accounts`, `twofactor`, `recovery` and `audit`; `http` and the CLI are
//! thin layers over them, and `store` is the only place that speaks SQL.

pub mod accounts;
pub mod app;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod http;
pub mod keyring;
pub mod mail;
pub mod ratelimit;
pub mod recovery;
pub mod store;
pub mod twofactor;

pub use app::{AppState, Application};
pub use config::Config;
