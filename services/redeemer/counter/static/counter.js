// The counter page's only script. Everything works without it (typing a code, the buttons,
// cancelling); it adds a confirmation before a cancellation, ignores a second submit of a
// form already sent, and scans the booklet's QR code with the camera where the browser
// offers BarcodeDetector (Chrome on Android, for one). A scanned code fills the field and
// is checked at once; it is redeemed only when the venue presses "Encaisser".
"use strict";

// The 21 symbols of a printed code (passnum/ledger/voucher_codes.py), with or without dashes,
// wherever they stand in what the QR code holds.
const CODE = /[0-9A-Z]{4}-?[0-9A-Z]{4}-?[0-9A-Z]{4}-?[0-9A-Z]{4}-?[0-9A-Z]{4}-?[0-9A-Z*~$=]/i;

function codeIn(raw) {
  const found = CODE.exec(raw || "");
  return found ? found[0].toUpperCase() : (raw || "").trim();
}

function guardForms() {
  for (const form of document.querySelectorAll("form[data-once], form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
        event.preventDefault();
        return;
      }
      if (form.hasAttribute("data-once")) {
        if (form.dataset.sent) { event.preventDefault(); return; }
        form.dataset.sent = "1";
      }
    });
  }
}

function setUpScanner() {
  const button = document.getElementById("scan");
  const video = document.getElementById("camera");
  const message = document.getElementById("scan-message");
  const field = document.getElementById("code");
  const check = document.getElementById("check");
  if (!button || !("BarcodeDetector" in window) || !navigator.mediaDevices) return;
  const startLabel = button.textContent;
  let stream = null;
  let timer = null;

  function stop() {
    if (timer) clearTimeout(timer);
    timer = null;
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    video.hidden = true;
    button.textContent = startLabel;
  }

  async function start() {
    let detector;
    try {
      detector = new window.BarcodeDetector({ formats: ["qr_code"] });
      stream = await navigator.mediaDevices.getUserMedia(
        { video: { facingMode: "environment" }, audio: false });
    } catch (error) {
      stop();
      message.textContent = button.dataset.failed;
      message.hidden = false;
      return;
    }
    video.srcObject = stream;
    video.hidden = false;
    button.textContent = button.dataset.stop;
    await video.play().catch(() => {});
    const look = async () => {
      if (!stream) return;
      try {
        const codes = await detector.detect(video);
        if (codes.length > 0) {
          field.value = codeIn(codes[0].rawValue);
          stop();
          check.click();
          return;
        }
      } catch (error) { /* a frame not ready yet: look again */ }
      timer = setTimeout(look, 200);
    };
    look();
  }

  button.hidden = false;
  button.addEventListener("click", () => (stream ? stop() : start()));
}

document.addEventListener("DOMContentLoaded", () => {
  guardForms();
  setUpScanner();
});
