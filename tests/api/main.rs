//! One integration-test binary (many binaries make the suite slow to link): every module drives
//! the real server over HTTP.

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod admin;
mod attacks;
mod audit_and_email;
mod cli;
mod contract;
mod faults;
mod fuzz;
mod interop;
mod keys;
mod pages;
mod password_reset;
mod recovery;
mod two_factor;
mod webauthn;
