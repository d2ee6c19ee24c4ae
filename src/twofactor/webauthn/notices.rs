//! The emails about security keys: added, removed, and a key that looks copied.

use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::mail::{Action, EventDetails, Notice};

const SECURE_ACCOUNT: &str =
    "Someone may know your password. Sign in, change your password, and review your security settings now.";

fn account_action(state: &AppState) -> Option<Action> {
    Some(Action {
        label: "Review your account security".into(),
        url: state.config.link("/account"),
    })
}

pub fn security_key_added(state: &AppState, now: i64, client: &ClientInfo, name: &str, turned_on_2fa: bool) -> Notice {
    let mut paragraphs = vec![format!(
        "The security key \u{201c}{name}\u{201d} was added to your account. It can now be used as the second step when you sign in."
    )];
    if turned_on_2fa {
        paragraphs.push(
            "This turned two-factor authentication on: signing in now needs your security key (or a backup code) after your password."
                .into(),
        );
        paragraphs.push(
            "Keep your backup codes somewhere safe, such as a password manager: each works once if you lose your key."
                .into(),
        );
    }
    Notice {
        subject: if turned_on_2fa {
            "Two-factor authentication is on".into()
        } else {
            "A security key was added to your account".into()
        },
        heading: "A security key was added".into(),
        paragraphs,
        action: account_action(state),
        not_you: Some(format!(
            "Remove the key at once, then change your password. {SECURE_ACCOUNT}"
        )),
        event: Some(EventDetails::new(now, client)),
        ..Notice::default()
    }
}

pub fn security_key_removed(state: &AppState, now: i64, client: &ClientInfo, name: &str) -> Notice {
    Notice {
        subject: "A security key was removed from your account".into(),
        heading: "A security key was removed".into(),
        paragraphs: vec![format!(
            "The security key \u{201c}{name}\u{201d} was removed from your account and can no longer be used to sign in."
        )],
        action: account_action(state),
        not_you: Some(SECURE_ACCOUNT.into()),
        event: Some(EventDetails::new(now, client)),
        ..Notice::default()
    }
}

pub fn possible_cloned_key(state: &AppState, now: i64, client: &ClientInfo, name: &str) -> Notice {
    Notice {
        subject: "A sign-in with a copy of your security key was refused".into(),
        heading: "Your security key may have been copied".into(),
        paragraphs: vec![
            format!(
                "Someone tried to sign in with your security key \u{201c}{name}\u{201d}, but the key's use counter went backwards. That happens when two copies of a key exist, so the sign-in was refused."
            ),
            "If you did not restore or copy this key yourself, remove it from your account, and sign in with another key or a backup code.".into(),
        ],
        action: account_action(state),
        not_you: Some(SECURE_ACCOUNT.into()),
        event: Some(EventDetails::new(now, client)),
        ..Notice::default()
    }
}
