//! Interoperability with the world outside latchkey: an independent TOTP implementation
//! (oathtool, from the Debian package of that name) computes the same codes from the secret that
//! `/me/2fa/totp/setup` hands out, and the QR image decodes (with an independent QR reader,
//! `rqrr`) to the same otpauth URI. Neither depends on the database, so they run on SQLite only.

use std::process::Command;

use latchkey::clock::Clock;
use latchkey::twofactor::totp;
use serde_json::json;

use crate::common::{spawn_app, spawn_app_with, Backend, TestApp};

/// oathtool's code for `secret` (base32) at `unix` seconds; `None` when oathtool is not installed
/// outside CI. In CI (`CI` set) a missing oathtool fails the test instead of skipping it.
fn oathtool(secret_base32: &str, unix: i64) -> Option<String> {
    let output = match Command::new("oathtool")
        .args(["--totp", "-b", secret_base32, "--now", &format!("@{unix}")])
        .output()
    {
        Ok(output) => output,
        Err(error) if std::env::var_os("CI").is_none() => {
            eprintln!("oathtool is not installed ({error}): apt-get install oathtool; test skipped outside CI");
            return None;
        }
        Err(error) => panic!("oathtool is required in CI (apt-get install oathtool): {error}"),
    };
    assert!(
        output.status.success(),
        "oathtool failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

async fn setup(app: &TestApp, email: &str) -> (String, serde_json::Value) {
    let user = app.new_user(email).await;
    let setup = app
        .post("/api/v1/me/2fa/totp/setup", Some(&user.token), json!({}))
        .await
        .expect(200);
    (user.token, setup.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_secret_gives_the_same_codes_as_oathtool() {
    let app = spawn_app(Backend::Sqlite).await;
    let (token, body) = setup(&app, "oath@example.com").await;
    let secret_text = body["secret"].as_str().unwrap();
    let secret = totp::decode_secret_base32(secret_text).unwrap();

    // The RFC 6238 secret first, so a broken oathtool invocation cannot pass unnoticed.
    let Some(rfc) = oathtool("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 59) else {
        return;
    };
    assert_eq!(
        rfc, "287082",
        "RFC 6238 appendix B, T = 59 (last six digits of 94287082)"
    );

    for unix in [
        0,
        59,
        1_111_111_109,
        1_234_567_890,
        2_000_000_000,
        20_000_000_000,
        app.clock.unix(),
    ] {
        let expected = oathtool(secret_text, unix).unwrap();
        assert_eq!(totp::code_for_step(&secret, totp::step_at(unix)), expected, "at {unix}");
    }

    // And the server itself accepts oathtool's current code to turn 2FA on.
    let code = oathtool(secret_text, app.clock.unix()).unwrap();
    let confirmed = app
        .post("/api/v1/me/2fa/totp/confirm", Some(&token), json!({"code": code}))
        .await
        .expect(200);
    assert_eq!(confirmed.body["enabled"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_code_decodes_to_the_otpauth_uri() {
    // An issuer and an account name that need percent-encoding.
    let app = spawn_app_with(Backend::Sqlite, &[("LATCHKEY_PRODUCT_NAME", "Acme & Co Zürich")]).await;
    let (_, body) = setup(&app, "o'neil+totp@example.com").await;
    let uri = body["otpauth_uri"].as_str().unwrap();
    let svg = body["qr_svg"].as_str().unwrap();

    let decoded = decode_qr_svg(svg);
    assert_eq!(decoded, uri);
    assert!(decoded.starts_with("otpauth://totp/Acme%20%26%20Co%20Z%C3%BCrich:o%27neil%2Btotp%40example.com?"));
    let secret_in_image = decoded
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("secret="))
        .unwrap();
    assert_eq!(secret_in_image, body["secret"].as_str().unwrap());
}

/// Rasterises the QR SVG (a background rect and one path of axis-aligned squares, as the `qrcode`
/// crate draws it; dark `<rect>`s are handled too) and reads it with `rqrr`.
fn decode_qr_svg(svg: &str) -> String {
    let attribute = |element: &str, name: &str| -> Option<String> {
        let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(element[start..].split('"').next()?.to_string())
    };
    let size: usize = attribute(svg, "width").and_then(|w| w.parse().ok()).expect("svg width");
    let mut dark = vec![false; size * size];
    let mut fill = |left: f64, top: f64, right: f64, bottom: f64| {
        for y in (top.round() as usize)..(bottom.round() as usize).min(size) {
            for x in (left.round() as usize)..(right.round() as usize).min(size) {
                dark[y * size + x] = true;
            }
        }
    };
    let is_dark = |element: &str| {
        attribute(element, "fill").is_some_and(|colour| matches!(colour.as_str(), "#000" | "#000000" | "black"))
    };
    for element in svg.split('<').skip(1) {
        if element.starts_with("rect") && is_dark(element) {
            let number = |name| attribute(element, name).and_then(|v| v.parse::<f64>().ok()).unwrap();
            let (x, y) = (number("x"), number("y"));
            fill(x, y, x + number("width"), y + number("height"));
        }
        if element.starts_with("path") && is_dark(element) {
            for (left, top, right, bottom) in path_boxes(&attribute(element, "d").expect("path data")) {
                fill(left, top, right, bottom);
            }
        }
    }
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(size, size, |x, y| if dark[y * size + x] { 0 } else { 255 });
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    let (_, content) = grids[0].decode().expect("QR code decodes");
    content
}

/// Bounding boxes of the subpaths of an SVG path made of M/m, H/h, V/v, L/l and Z commands.
fn path_boxes(data: &str) -> Vec<(f64, f64, f64, f64)> {
    let mut tokens: Vec<String> = Vec::new();
    let mut number = String::new();
    for character in data.chars() {
        if character.is_ascii_alphabetic() || character == ' ' || character == ',' {
            if !number.is_empty() {
                tokens.push(std::mem::take(&mut number));
            }
            if character.is_ascii_alphabetic() {
                tokens.push(character.to_string());
            }
        } else {
            number.push(character);
        }
    }
    if !number.is_empty() {
        tokens.push(number);
    }
    let mut boxes = Vec::new();
    let (mut x, mut y) = (0.0, 0.0);
    let mut current: Option<(f64, f64, f64, f64)> = None;
    let mut index = 0;
    let value = |index: usize| tokens[index].parse::<f64>().expect("path number");
    while index < tokens.len() {
        let command = tokens[index].clone();
        index += 1;
        match command.as_str() {
            "M" | "m" | "L" | "l" => {
                let (dx, dy) = (value(index), value(index + 1));
                index += 2;
                if command == "M" || command == "L" {
                    (x, y) = (dx, dy);
                } else {
                    (x, y) = (x + dx, y + dy);
                }
                if command.eq_ignore_ascii_case("m") {
                    boxes.extend(current.take());
                }
            }
            "H" | "h" => {
                let dx = value(index);
                index += 1;
                x = if command == "H" { dx } else { x + dx };
            }
            "V" | "v" => {
                let dy = value(index);
                index += 1;
                y = if command == "V" { dy } else { y + dy };
            }
            "Z" | "z" => continue,
            other => panic!("unexpected path command {other:?}"),
        }
        let (left, top, right, bottom) = current.unwrap_or((x, y, x, y));
        current = Some((left.min(x), top.min(y), right.max(x), bottom.max(y)));
    }
    boxes.extend(current);
    boxes
}
