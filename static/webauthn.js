// Passkeys and security keys in the browser: runs the WebAuthn ceremonies against latchkey's JSON
// endpoints. Loaded as a file (the Content-Security-Policy forbids inline script); it wires
// itself to forms marked with data attributes:
//
//   <form method="post" action="/login/2fa" data-webauthn="login">
//     <input type="hidden" name="challenge_token" value="...">   (or data-challenge-token on the form)
//     <input type="hidden" name="csrf_token" value="...">
//     <input type="hidden" name="method" value="webauthn">
//     <input type="hidden" name="credential">
//     <p data-webauthn-error role="alert" hidden></p>
//     <button type="submit">Use your security key</button>
//   </form>
//
//   <form method="post" action="/account/2fa/webauthn" data-webauthn="register">
//     <label>Name of the key <input name="name"></label>
//     <input type="hidden" name="credential"> ... <button type="submit">Add security key</button>
//   </form>
//
// On submit the script asks the API for options (…/start), lets the browser talk to the key,
// writes the answer as JSON into the hidden "credential" field and submits the form to the page,
// whose handler finishes the ceremony on the server (and sets the session cookie, or shows the
// backup codes). With data-webauthn-finish="json" it calls the JSON …/finish endpoint itself
// instead and then goes to data-success-url (the answer is also dispatched as the event
// "latchkey:webauthn", detail = the JSON answer).
(function () {
  "use strict";

  function bufferFromBase64url(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    base64 += "===".slice((base64.length + 3) % 4);
    var binary = atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function base64urlFromBuffer(buffer) {
    var bytes = new Uint8Array(buffer);
    var binary = "";
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  function withBufferIds(list) {
    return (list || []).map(function (item) {
      return Object.assign({}, item, { id: bufferFromBase64url(item.id) });
    });
  }

  // {publicKey: …} from the server, binary fields base64url → what navigator.credentials wants.
  function creationOptions(json) {
    var options = Object.assign({}, json.publicKey);
    options.challenge = bufferFromBase64url(options.challenge);
    options.user = Object.assign({}, options.user, { id: bufferFromBase64url(options.user.id) });
    options.excludeCredentials = withBufferIds(options.excludeCredentials);
    return { publicKey: options };
  }

  function requestOptions(json) {
    var options = Object.assign({}, json.publicKey);
    options.challenge = bufferFromBase64url(options.challenge);
    options.allowCredentials = withBufferIds(options.allowCredentials);
    return { publicKey: options };
  }

  function registrationJSON(credential) {
    var response = credential.response;
    return {
      id: credential.id,
      rawId: base64urlFromBuffer(credential.rawId),
      type: credential.type,
      response: {
        attestationObject: base64urlFromBuffer(response.attestationObject),
        clientDataJSON: base64urlFromBuffer(response.clientDataJSON),
        transports: typeof response.getTransports === "function" ? response.getTransports() : undefined
      },
      clientExtensionResults: {}
    };
  }

  function assertionJSON(credential) {
    var response = credential.response;
    return {
      id: credential.id,
      rawId: base64urlFromBuffer(credential.rawId),
      type: credential.type,
      response: {
        authenticatorData: base64urlFromBuffer(response.authenticatorData),
        clientDataJSON: base64urlFromBuffer(response.clientDataJSON),
        signature: base64urlFromBuffer(response.signature),
        userHandle: response.userHandle ? base64urlFromBuffer(response.userHandle) : null
      },
      clientExtensionResults: {}
    };
  }

  // POSTs JSON with the session cookie; rejects with the API's message on an error answer.
  function postJSON(path, body) {
    return fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body)
    }).then(function (response) {
      return response.text().then(function (text) {
        var answer = text ? JSON.parse(text) : null;
        if (!response.ok) {
          var error = new Error((answer && answer.message) || "The server refused the request.");
          error.code = answer && answer.error;
          throw error;
        }
        return answer;
      });
    });
  }

  function friendlyMessage(error) {
    if (error && (error.name === "NotAllowedError" || error.name === "AbortError")) {
      return "The security key did not answer, or the request was cancelled. Try again.";
    }
    if (error && error.name === "InvalidStateError") {
      return "This security key is already registered to your account.";
    }
    if (error && error.name === "SecurityError") {
      return "This page's address does not match the server's configured address, so the browser refused.";
    }
    return (error && error.message) || "Something went wrong. Try again.";
  }

  // The ceremonies themselves, for pages that wire things their own way.
  function register(name) {
    return postJSON("/api/v1/me/2fa/webauthn/register/start", { name: name || "" })
      .then(function (options) { return navigator.credentials.create(creationOptions(options)); })
      .then(registrationJSON);
  }

  function authenticate(challengeToken) {
    return postJSON("/api/v1/login/webauthn/start", { challenge_token: challengeToken })
      .then(function (options) { return navigator.credentials.get(requestOptions(options)); })
      .then(assertionJSON);
  }

  // The login challenge: data-challenge-token, or the form's challenge_token field.
  function challengeTokenOf(form) {
    var field = form.querySelector("[name=challenge_token]");
    return form.dataset.challengeToken || (field && field.value) || "";
  }

  function finishJSON(kind, form, credential) {
    if (kind === "register") {
      return postJSON("/api/v1/me/2fa/webauthn/register/finish", credential);
    }
    return postJSON("/api/v1/login/webauthn/finish", {
      challenge_token: challengeTokenOf(form),
      credential: credential
    });
  }

  function showError(form, message) {
    var slot = form.querySelector("[data-webauthn-error]");
    if (slot) {
      slot.textContent = message;
      slot.hidden = false;
    } else {
      window.alert(message);
    }
  }

  function wire(form) {
    var kind = form.dataset.webauthn;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var button = form.querySelector("button[type=submit], button:not([type])");
      if (button) button.disabled = true;
      var nameField = form.querySelector("[name=name]");
      var ceremony = kind === "register"
        ? register(nameField ? nameField.value : "")
        : authenticate(challengeTokenOf(form));
      ceremony
        .then(function (credential) {
          if (form.dataset.webauthnFinish === "json") {
            return finishJSON(kind, form, credential).then(function (answer) {
              form.dispatchEvent(new CustomEvent("latchkey:webauthn", { bubbles: true, detail: answer }));
              if (form.dataset.successUrl) window.location.assign(form.dataset.successUrl);
            });
          }
          var field = form.querySelector("[name=credential]");
          field.value = JSON.stringify(credential);
          HTMLFormElement.prototype.submit.call(form);
        })
        .catch(function (error) {
          showError(form, friendlyMessage(error));
        })
        .finally(function () {
          if (button) button.disabled = false;
        });
    });
  }

  function start() {
    var supported = !!(window.PublicKeyCredential && navigator.credentials);
    document.querySelectorAll("[data-webauthn-unsupported]").forEach(function (element) {
      element.hidden = supported;
    });
    document.querySelectorAll("form[data-webauthn]").forEach(function (form) {
      if (supported) {
        wire(form);
      } else {
        form.hidden = true;
      }
    });
  }

  window.latchkeyWebauthn = { register: register, authenticate: authenticate, finishJSON: finishJSON };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
