//! One integration-test binary (many binaries make the suite slow to link): every module drives
//! the real server over HTTP.

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod audit_and_email;
mod cli;
mod contract;
mod pages;
mod two_factor;
mod webauthn;
