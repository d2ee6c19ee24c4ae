//! The security notices latchkey sends, in plain words: what happened, when and from where, and
//! what to do if it was not the user.

use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::mail::{Action, EventDetails, Notice};

const SECURE_ACCOUNT: &str =
    "Someone may know your password. Sign in, change your password, and review your security settings now.";

fn notice(subject: &str, heading: &str, paragraphs: Vec<String>, now: i64, client: &ClientInfo) -> Notice {
    Notice {
        subject: subject.to_string(),
        heading: heading.to_string(),
        paragraphs,
        event: Some(EventDetails::new(now, client)),
        ..Notice::default()
    }
}

fn account_action(state: &AppState) -> Option<Action> {
    Some(Action {
        label: "Review your account security".into(),
        url: state.config.link("/account"),
    })
}

pub fn password_changed(state: &AppState, now: i64, client: &ClientInfo) -> Notice {
    Notice {
        action: account_action(state),
        not_you: Some(format!(
            "Reset your password at {} right away; your other sessions were signed out.",
            state.config.link("/forgot-password")
        )),
        ..notice(
            "Your password was changed",
            "Your password was changed",
            vec!["The password of your account was changed, and every other session was signed out.".into()],
            now,
            client,
        )
    }
}

pub fn two_factor_enabled(state: &AppState, now: i64, client: &ClientInfo) -> Notice {
    Notice {
        action: account_action(state),
        not_you: Some(SECURE_ACCOUNT.into()),
        ..notice(
            "Two-factor authentication is on",
            "Two-factor authentication was turned on",
            vec![
                "Signing in now needs a code from your authenticator app after your password.".into(),
                "Keep your backup codes somewhere safe, such as a password manager: each works once if you lose your phone.".into(),
            ],
            now,
            client,
        )
    }
}

pub fn authenticator_replaced(state: &AppState, now: i64, client: &ClientInfo) -> Notice {
    Notice {
        action: account_action(state),
        not_you: Some(SECURE_ACCOUNT.into()),
        ..notice(
            "Your authenticator app was changed",
            "A new authenticator app was set up",
            vec!["Codes from your previous authenticator app no longer work; use the new one from now on.".into()],
            now,
            client,
        )
    }
}

pub fn backup_codes_regenerated(state: &AppState, now: i64, client: &ClientInfo) -> Notice {
    Notice {
        action: account_action(state),
        not_you: Some(SECURE_ACCOUNT.into()),
        ..notice(
            "New backup codes were created",
            "New backup codes were created",
            vec!["A new set of 10 backup codes was created. Every earlier backup code has stopped working.".into()],
            now,
            client,
        )
    }
}

pub fn backup_code_used(state: &AppState, now: i64, client: &ClientInfo, remaining: i64) -> Notice {
    let mut paragraphs = vec![format!(
        "One of your backup codes was just used. You have {remaining} backup code{} left.",
        if remaining == 1 { "" } else { "s" }
    )];
    if crate::twofactor::backup_codes::is_low(remaining) {
        paragraphs.push(
            "You are running low on backup codes. Create a new set now, while you can still sign in, so a lost phone cannot lock you out."
                .into(),
        );
    }
    Notice {
        action: Some(Action {
            label: "Create new backup codes".into(),
            url: state.config.link("/account/2fa/backup-codes"),
        }),
        not_you: Some(SECURE_ACCOUNT.into()),
        ..notice(
            if crate::twofactor::backup_codes::is_low(remaining) {
                "A backup code was used — you are running low"
            } else {
                "A backup code was used"
            },
            "A backup code was used to sign in",
            paragraphs,
            now,
            client,
        )
    }
}

pub fn two_factor_disabled(state: &AppState, now: i64, client: &ClientInfo) -> Notice {
    Notice {
        action: Some(Action { label: "Turn two-factor authentication back on".into(), url: state.config.link("/account/2fa/setup") }),
        not_you: Some(SECURE_ACCOUNT.into()),
        ..notice(
            "Two-factor authentication was turned off",
            "Two-factor authentication was turned off",
            vec![
                "Your authenticator app, backup codes and security keys were removed from your account. Signing in now needs only your password.".into(),
                "Every other session was signed out.".into(),
            ],
            now,
            client,
        )
    }
}

pub fn second_factor_guessing(state: &AppState, now: i64, client: &ClientInfo) -> Notice {
    Notice {
        action: Some(Action { label: "Change your password".into(), url: state.config.link("/account/password") }),
        not_you: Some("If these attempts were not you, someone has your password: change it now.".into()),
        ..notice(
            "Someone entered your password and is guessing codes",
            "Several wrong two-factor codes were entered",
            vec![
                "Someone signed in with your correct password, then entered several wrong two-factor codes. Further attempts are now slowed down.".into(),
            ],
            now,
            client,
        )
    }
}

pub fn second_factor_locked(state: &AppState, now: i64, client: &ClientInfo) -> Notice {
    Notice {
        action: Some(Action {
            label: "Recover your account".into(),
            url: state.config.link("/recover"),
        }),
        not_you: Some(
            "Someone has your password and tried 100 wrong codes. Change your password after you recover access."
                .into(),
        ),
        ..notice(
            "Two-factor sign-in is locked",
            "Two-factor sign-in was locked",
            vec![
                "After 100 wrong two-factor codes in a row, signing in with a code is locked on your account.".into(),
                "To unlock it, recover your account or ask your administrator to reset two-factor authentication."
                    .into(),
            ],
            now,
            client,
        )
    }
}
