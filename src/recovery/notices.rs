//! The emails of recovery, password reset and admin reset, in plain words: what happened, when
//! and from where, what happens next, and what to do if it was not the user.

use crate::app::AppState;
use crate::audit::ClientInfo;
use crate::clock::rfc3339;
use crate::mail::{Action, EventDetails, Notice};

use super::cancel::CancelledBy;

const SECURE_EMAIL: &str =
    "Someone who can read your email is trying to take over your account. Cancel it with the link above, \
     change your email password, and tell your administrator.";

fn notice(subject: &str, heading: &str, paragraphs: Vec<String>, now: i64, client: &ClientInfo) -> Notice {
    Notice {
        subject: subject.to_string(),
        heading: heading.to_string(),
        paragraphs,
        event: Some(EventDetails::new(now, client)),
        ..Notice::default()
    }
}

fn action(label: &str, url: String) -> Option<Action> {
    Some(Action {
        label: label.to_string(),
        url,
    })
}

/// `2025-03-18 01:58:29 UTC`, as in the event details.
fn moment(unix_seconds: i64) -> String {
    rfc3339(unix_seconds).replace('T', " ").replace('Z', " UTC")
}

/// A waiting period in words: `72 hours`, `7 days`, `30 minutes` (hours up to three days, as
/// people count a weekend).
pub fn describe_duration(seconds: i64) -> String {
    let (amount, unit) = if seconds > 3 * 86400 && seconds % 86400 == 0 {
        (seconds / 86400, "day")
    } else if seconds >= 3600 && seconds % 3600 == 0 {
        (seconds / 3600, "hour")
    } else if seconds >= 60 && seconds % 60 == 0 {
        (seconds / 60, "minute")
    } else {
        (seconds, "second")
    };
    format!("{amount} {unit}{}", if amount == 1 { "" } else { "s" })
}

pub fn recovery_link(state: &AppState, now: i64, client: &ClientInfo, link: &str) -> Notice {
    let delay = describe_duration(state.config.recovery_delay.as_secs() as i64);
    Notice {
        action: action("Start recovering your account", link.to_string()),
        not_you: Some(
            "Ignore this email. Nothing changes unless the link is opened, and your password and second factor keep protecting your account."
                .into(),
        ),
        ..notice(
            "Recover your account",
            "Recover access to your account",
            vec![
                "Someone asked to recover this account because its second factor (authenticator app, backup codes or security key) was lost.".into(),
                format!(
                    "Open the link below within 1 hour to start. For your protection, recovery then waits {delay} before it completes; \
                     we email you when it starts and remind you before it ends, so the real owner can cancel it."
                ),
                "If you still have a backup code, you do not need this: sign in with the backup code instead.".into(),
            ],
            now,
            client,
        )
    }
}

pub fn recovery_not_needed(state: &AppState, now: i64, client: &ClientInfo) -> Notice {
    Notice {
        action: action("Reset your password", state.config.link("/forgot-password")),
        not_you: Some("You can ignore this email: nothing has changed.".into()),
        ..notice(
            "About your account recovery request",
            "Your account has no second factor to recover",
            vec![
                "Someone asked to recover the second factor of this account, but the account does not use two-factor authentication, so there is nothing to recover.".into(),
                "If you cannot sign in because you forgot your password, reset your password instead.".into(),
            ],
            now,
            client,
        )
    }
}

pub fn recovery_by_email_off(state: &AppState, now: i64, client: &ClientInfo) -> Notice {
    Notice {
        action: action("Sign in with a backup code", state.config.link("/login")),
        not_you: Some("You can ignore this email: nothing has changed, and no recovery was started.".into()),
        ..notice(
            "Account recovery by email is turned off",
            "Recovery by email is off for your account",
            vec![
                "Someone asked to recover this account by email, but you turned recovery by email off, so no recovery was started.".into(),
                "If you lost your authenticator, sign in with one of your backup codes, then set up a new authenticator.".into(),
                "If you have no backup codes left, ask your administrator to reset two-factor authentication for you.".into(),
            ],
            now,
            client,
        )
    }
}

fn waiting_paragraphs(completes_at: i64, lost_password: bool) -> Vec<String> {
    let mut paragraphs = vec![format!(
        "On {}, when the waiting period ends, your authenticator app, backup codes and security keys will be removed and every session signed out.",
        moment(completes_at)
    )];
    if lost_password {
        paragraphs.push(
            "Your password will be replaced too: the person recovering the account said the password was lost as well, and will choose a new one.".into(),
        );
    }
    paragraphs
}

pub fn recovery_started(
    state: &AppState,
    now: i64,
    client: &ClientInfo,
    completes_at: i64,
    lost_password: bool,
    cancel_link: &str,
) -> Notice {
    let mut paragraphs = vec!["Recovery of your account was started from the link we emailed.".to_string()];
    paragraphs.extend(waiting_paragraphs(completes_at, lost_password));
    paragraphs.push(
        "If this was you, there is nothing to do now: we will remind you before the waiting period ends; then open the same recovery link to finish.".into(),
    );
    paragraphs.push(
        "If it was not you, cancel it now. Signing in with your authenticator or a backup code cancels it too.".into(),
    );
    Notice {
        action: action("Cancel this recovery", cancel_link.to_string()),
        secondary_action: action("Review your account security", state.config.link("/account")),
        not_you: Some(SECURE_EMAIL.into()),
        ..notice(
            "Recovery of your account has started",
            "Someone started recovering your account",
            paragraphs,
            now,
            client,
        )
    }
}

/// `confirmed_at` and `confirmed_from` describe the confirmation the reminder is about.
pub fn recovery_reminder(
    state: &AppState,
    confirmed_at: i64,
    confirmed_from: &ClientInfo,
    completes_at: i64,
    lost_password: bool,
    cancel_link: &str,
) -> Notice {
    let mut paragraphs = vec![format!(
        "This is a reminder: recovery of your account, started on {} from the device below, completes soon.",
        moment(confirmed_at)
    )];
    paragraphs.extend(waiting_paragraphs(completes_at, lost_password));
    paragraphs.push("If it was not you, cancel it now.".into());
    Notice {
        action: action("Cancel this recovery", cancel_link.to_string()),
        secondary_action: action("Review your account security", state.config.link("/account")),
        not_you: Some(SECURE_EMAIL.into()),
        ..notice(
            "Reminder: recovery of your account completes soon",
            "Your account recovery completes soon",
            paragraphs,
            confirmed_at,
            confirmed_from,
        )
    }
}

pub fn recovery_completed(state: &AppState, now: i64, client: &ClientInfo, password_replaced: bool) -> Notice {
    let mut paragraphs = vec![
        "Recovery of your account completed. Your authenticator app, backup codes and security keys were removed, and every session was signed out.".to_string(),
    ];
    if password_replaced {
        paragraphs.push("Your password was replaced with the new one chosen during recovery.".into());
    }
    paragraphs.push(
        "A new sign-in after recovery was made from the device below. It can only set up a new second factor: set up two-factor authentication again now, and save the new backup codes.".into(),
    );
    Notice {
        action: action("Set up two-factor authentication", state.config.link("/account/2fa/setup")),
        not_you: Some(
            "Someone took over your account through your email. Contact your administrator at once, and secure your email account."
                .into(),
        ),
        ..notice(
            "Your account was recovered",
            "Your account was recovered",
            paragraphs,
            now,
            client,
        )
    }
}

pub fn recovery_cancelled(state: &AppState, now: i64, client: &ClientInfo, by: CancelledBy) -> Notice {
    Notice {
        action: action("Review your account security", state.config.link("/account")),
        not_you: Some(format!(
            "If you still need to recover your account, start again at {}.",
            state.config.link("/recover")
        )),
        ..notice(
            "Account recovery was cancelled",
            "Account recovery was cancelled",
            vec![
                format!(
                    "The pending recovery of your account was cancelled {}.",
                    by.explanation()
                ),
                "Nothing was changed: your second factor and backup codes still work.".into(),
            ],
            now,
            client,
        )
    }
}

pub fn email_recovery_changed(state: &AppState, now: i64, client: &ClientInfo, enabled: bool) -> Notice {
    let (subject, paragraph) = if enabled {
        (
            "Recovery by email was turned on",
            "If you lose your second factor and your backup codes, you can now recover your account from a link we email you, after a waiting period.",
        )
    } else {
        (
            "Recovery by email was turned off",
            "If you lose your second factor, only your backup codes or an administrator can get you back in. Any pending recovery was cancelled.",
        )
    };
    Notice {
        action: action("Review your account security", state.config.link("/account")),
        not_you: Some(
            "Someone may know your password and second factor. Sign in, change your password, and review your security settings now."
                .into(),
        ),
        ..notice(subject, subject, vec![paragraph.to_string()], now, client)
    }
}

pub fn password_reset_link(
    state: &AppState,
    now: i64,
    client: &ClientInfo,
    link: &str,
    needs_second_factor: bool,
) -> Notice {
    let mut paragraphs = vec![
        "Someone asked to reset the password of this account. Open the link below within 1 hour to choose a new password; it works once.".to_string(),
    ];
    if needs_second_factor {
        paragraphs.push(format!(
            "Your account uses two-factor authentication, so you will also need a code from your authenticator app or a backup code. \
             If you lost those too, recover your account instead: {}",
            state.config.link("/recover")
        ));
    }
    Notice {
        action: action("Choose a new password", link.to_string()),
        not_you: Some("Ignore this email: your password stays the same.".into()),
        ..notice("Reset your password", "Reset your password", paragraphs, now, client)
    }
}

pub fn password_reset_done(state: &AppState, now: i64, client: &ClientInfo) -> Notice {
    Notice {
        action: action("Review your account security", state.config.link("/account")),
        not_you: Some(
            "Someone can read your email and reset your password. Secure your email account, reset your password again, and tell your administrator."
                .into(),
        ),
        ..notice(
            "Your password was reset",
            "Your password was reset",
            vec!["The password of your account was reset with an emailed link, and every session was signed out.".into()],
            now,
            client,
        )
    }
}

/// `who` names the administrator(s); `reason` is what they gave.
pub fn admin_reset(state: &AppState, now: i64, client: &ClientInfo, who: &str, reason: &str) -> Notice {
    Notice {
        action: action("Set up two-factor authentication", state.config.link("/account/2fa/setup")),
        not_you: Some(
            "If you did not ask for this, contact your administrator immediately and change your password: someone may have impersonated you."
                .into(),
        ),
        ..notice(
            "An administrator reset your two-factor authentication",
            "Your two-factor authentication was reset",
            vec![
                format!("{who} reset two-factor authentication on your account on {}.", moment(now)),
                format!("Reason given: {reason}"),
                "Your authenticator app, backup codes and security keys were removed, and every session was signed out. You can sign in with your password; then set up two-factor authentication again right away.".into(),
            ],
            now,
            client,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::describe_duration;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(describe_duration(72 * 3600), "72 hours");
        assert_eq!(describe_duration(7 * 86400), "7 days");
        assert_eq!(describe_duration(86400), "24 hours");
        assert_eq!(describe_duration(4 * 86400), "4 days");
        assert_eq!(describe_duration(1800), "30 minutes");
        assert_eq!(describe_duration(1), "1 second");
        assert_eq!(describe_duration(0), "0 seconds");
    }
}
