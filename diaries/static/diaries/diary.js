// The client's diary page: record with MediaRecorder (timer and level meter) or pick a file, upload it to
// POST /upload with the session's CSRF token, follow GET /api/jobs/<name>, then show the finished entry.
(function () {
  "use strict";
  const root = document.getElementById("recorder");
  if (!root) return;
  const $ = (id) => document.getElementById(id);
  const csrfToken = root.querySelector("input[name=csrfmiddlewaretoken]").value;
  const recordButton = $("record-button");
  const stopButton = $("stop-button");
  const timer = $("timer");
  const levelBar = $("level-bar");
  const levelMeter = $("level-meter");
  const fileInput = $("file-input");
  const uploadFileButton = $("upload-file-button");
  const jobBox = $("job");
  const jobStatus = $("job-status");
  const jobProgress = $("job-progress");
  const errorBox = $("recorder-error");
  const maxBytes = parseInt(root.dataset.maxMb, 10) * 1024 * 1024;

  let recorder = null;
  let stream = null;
  let audioContext = null;
  let chunks = [];
  let startedAt = 0;
  let tick = null;
  let frame = null;

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = !message;
  }

  function formatClock(seconds) {
    const s = Math.floor(seconds);
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }

  function pickMimeType() {
    const candidates = ["audio/webm;codecs=opus", "audio/webm", "audio/ogg;codecs=opus", "audio/mp4"];
    for (const type of candidates) {
      if (window.MediaRecorder && MediaRecorder.isTypeSupported(type)) return type;
    }
    return "";
  }

  function extensionFor(type) {
    if (type.indexOf("ogg") >= 0) return "ogg";
    if (type.indexOf("mp4") >= 0) return "m4a";
    return "webm";
  }

  function startMeter(mediaStream) {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    audioContext = new Context();
    const analyser = audioContext.createAnalyser();
    analyser.fftSize = 1024;
    audioContext.createMediaStreamSource(mediaStream).connect(analyser);
    const samples = new Float32Array(analyser.fftSize);
    const draw = function () {
      analyser.getFloatTimeDomainData(samples);
      let sum = 0;
      for (let i = 0; i < samples.length; i++) sum += samples[i] * samples[i];
      const rms = Math.sqrt(sum / samples.length);
      const level = Math.min(1, rms * 4); // speech sits around 0.05–0.25 RMS
      levelBar.style.width = (level * 100).toFixed(1) + "%";
      levelMeter.value = level;
      root.dataset.peakLevel = Math.max(parseFloat(root.dataset.peakLevel || "0"), level).toFixed(3);
      frame = requestAnimationFrame(draw);
    };
    draw();
  }

  function stopMeter() {
    if (frame) cancelAnimationFrame(frame);
    frame = null;
    levelBar.style.width = "0%";
    levelMeter.value = 0;
    if (audioContext) audioContext.close();
    audioContext = null;
  }

  async function startRecording() {
    showError("");
    if (!navigator.mediaDevices || !window.MediaRecorder) {
      showError("This browser cannot record audio. Choose a file instead.");
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      showError("The microphone is not available (" + err.name + "). Allow it, or choose a file instead.");
      return;
    }
    const mimeType = pickMimeType();
    recorder = new MediaRecorder(stream, mimeType ? { mimeType: mimeType } : undefined);
    chunks = [];
    recorder.ondataavailable = function (event) {
      if (event.data && event.data.size) chunks.push(event.data);
    };
    recorder.onstop = function () {
      const type = recorder.mimeType || mimeType || "audio/webm";
      const blob = new Blob(chunks, { type: type });
      stream.getTracks().forEach(function (track) { track.stop(); });
      stopMeter();
      upload(blob, "diary-" + new Date().toISOString().replace(/[:.]/g, "-") + "." + extensionFor(type));
    };
    recorder.start(1000);
    startedAt = performance.now();
    root.classList.add("recording");
    recordButton.disabled = true;
    stopButton.disabled = false;
    timer.textContent = "0:00";
    tick = setInterval(function () {
      timer.textContent = formatClock((performance.now() - startedAt) / 1000);
    }, 250);
    startMeter(stream);
  }

  function stopRecording() {
    if (!recorder || recorder.state === "inactive") return;
    clearInterval(tick);
    root.classList.remove("recording");
    stopButton.disabled = true;
    recorder.stop();
  }

  function setJob(text, progress) {
    jobBox.hidden = false;
    jobStatus.textContent = text;
    if (progress !== undefined) jobProgress.value = progress;
  }

  async function upload(blob, filename) {
    if (blob.size > maxBytes) {
      showError("That file is larger than the upload limit.");
      recordButton.disabled = false;
      return;
    }
    const form = new FormData();
    form.append("audio_file", blob, filename);
    setJob("Uploading…", 0);
    recordButton.disabled = true;
    uploadFileButton.disabled = true;
    let response;
    try {
      response = await fetch(root.dataset.uploadUrl, {
        method: "POST",
        body: form,
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken, Accept: "application/json" },
      });
    } catch (err) {
      finish("The upload failed: the server could not be reached.");
      return;
    }
    const body = await response.json().catch(function () { return {}; });
    if (response.status !== 202) {
      finish(body.message || "The upload failed (" + response.status + ").");
      return;
    }
    root.dataset.jobName = body.job_name;
    setJob("Uploaded. Waiting for a transcriber…", 5);
    follow(body.job_name);
  }

  const STATUS_TEXT = {
    queued: "Waiting for a transcriber…",
    transcribing: "Listening to your recording…",
    formatting: "Writing up your entry…",
    done: "Done.",
  };

  async function follow(jobName) {
    const url = root.dataset.jobUrl.replace("JOB", encodeURIComponent(jobName));
    for (;;) {
      await new Promise(function (resolve) { setTimeout(resolve, 1000); });
      let job;
      try {
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (!response.ok) continue;
        job = await response.json();
      } catch (err) {
        continue; // a blip: try again
      }
      setJob((STATUS_TEXT[job.status] || job.status) + " " + job.progress + "%", job.progress);
      if (job.status === "failed") {
        finish("Sorry, this recording could not be turned into an entry: " + (job.error_message || "unknown error"));
        return;
      }
      if (job.status === "done" && job.entry_id) {
        await showEntry(job.entry_id);
        finish("");
        setJob("Your entry is ready.", 100);
        return;
      }
    }
  }

  async function showEntry(entryId) {
    const url = root.dataset.cardUrl.replace("/0/", "/" + entryId + "/");
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return;
    const html = await response.text();
    const list = $("entry-list");
    const empty = $("no-entries");
    if (empty) empty.remove();
    const holder = document.createElement("div");
    holder.innerHTML = html; // our own server-rendered, auto-escaped template
    const card = holder.firstElementChild;
    list.insertBefore(card, list.firstChild);
    card.scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  function finish(error) {
    showError(error);
    if (error) jobBox.hidden = true;
    recordButton.disabled = false;
    uploadFileButton.disabled = !fileInput.files.length;
  }

  recordButton.addEventListener("click", startRecording);
  stopButton.addEventListener("click", stopRecording);
  fileInput.addEventListener("change", function () {
    uploadFileButton.disabled = !fileInput.files.length;
  });
  uploadFileButton.addEventListener("click", function () {
    const file = fileInput.files[0];
    if (file) upload(file, file.name);
  });
})();
