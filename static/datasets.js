/* OneTrainer Web: uploads into a dataset (templates/datasets/_upload.html). Files, whole folders
   (dropped: webkitGetAsEntry; picked: webkitdirectory) or an archive go to the JSON API in chunks:
   POST .../uploads opens the upload with the file list, PUT .../<file>/<offset> sends each chunk.
   The upload's id stays in localStorage: after the page is closed, the same files picked again
   send only what the server does not have (it says what arrived). No framework, no build. */
(function () {
  "use strict";
  var PARALLEL = 3;
  var zone = document.querySelector(".upload[data-upload-url]");
  if (!zone) { return; }
  var url = zone.dataset.uploadUrl;
  var memoryKey = "otweb-upload:" + zone.dataset.dataset;
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var bar = zone.querySelector("progress");
  var figures = zone.querySelector(".upload-figures");
  var result = zone.querySelector(".upload-result");

  function api(method, target, body, type) {
    var headers = { "X-CSRF-Token": csrf, "Accept": "application/json" };
    if (type) { headers["Content-Type"] = type; }
    return fetch(target, { method: method, headers: headers, body: body, credentials: "same-origin" })
      .then(function (answer) {
        return answer.json().catch(function () { return {}; }).then(function (data) {
          return { status: answer.status, data: data };
        });
      });
  }

  function mb(bytes) { return (bytes / 1e6).toFixed(1) + " MB"; }

  function signature(files) {
    return files.map(function (f) { return f.path + ":" + f.file.size; }).join("|");
  }

  /* a folder's entries: readEntries answers in batches of up to 100 */
  function children(folder) {
    var reader = folder.createReader(), all = [];
    return new Promise(function (done) {
      (function more() {
        reader.readEntries(function (batch) {
          if (!batch.length) { done(all); return; }
          all = all.concat(Array.prototype.slice.call(batch));
          more();
        }, function () { done(all); });
      })();
    });
  }

  /* an entry's files, with their paths below the dropped folder (whose own name is left out) */
  function walk(entry, prefix, found) {
    if (entry.isFile) {
      return new Promise(function (done) {
        entry.file(function (file) { found.push({ path: prefix + file.name, file: file }); done(); }, function () { done(); });
      });
    }
    return children(entry).then(function (listed) {
      return Promise.all(listed.map(function (child) { return walk(child, prefix + entry.name + "/", found); }));
    });
  }

  function dropped(items) {
    var found = [], waits = [];
    Array.prototype.forEach.call(items, function (item) {
      var entry = item.webkitGetAsEntry && item.webkitGetAsEntry();
      if (!entry) { return; }
      waits.push(entry.isDirectory
        ? children(entry).then(function (listed) { return Promise.all(listed.map(function (child) { return walk(child, "", found); })); })
        : walk(entry, "", found));
    });
    return Promise.all(waits).then(function () { return found; });
  }

  function picked(input) {
    return Array.prototype.map.call(input.files, function (file) {
      var rel = file.webkitRelativePath || file.name;
      return { path: rel.indexOf("/") > 0 && file.webkitRelativePath ? rel.slice(rel.indexOf("/") + 1) : rel, file: file };
    });
  }

  function opened(files) {
    var kept = JSON.parse(localStorage.getItem(memoryKey) || "null");
    if (kept && kept.signature === signature(files)) {
      return api("GET", url + "/" + kept.id).then(function (answer) {
        return answer.status === 200 && !answer.data.complete ? answer.data : fresh(files);
      });
    }
    return fresh(files);
  }

  function fresh(files) {
    var listed = files.map(function (f) { return { path: f.path, size: f.file.size }; });
    return api("POST", url, JSON.stringify({ files: listed }), "application/json").then(function (answer) {
      if (answer.status !== 201) {
        throw new Error((answer.data.error || "refused") + ": " + (typeof answer.data.detail === "string" ? answer.data.detail : JSON.stringify(answer.data.detail || "")));
      }
      localStorage.setItem(memoryKey, JSON.stringify({ id: answer.data.id, signature: signature(files), bytes: answer.data.bytes, files: files.length }));
      return answer.data;
    });
  }

  function send(state, files) {
    var byPath = {}, chunk = state.chunk_size, started = Date.now();
    files.forEach(function (f) { byPath[f.path] = f.file; });
    var queue = state.files.filter(function (f) { return f.received < f.size || !f.result; });
    var total = state.bytes, arrived = state.received, startedWith = state.received;
    var done = state.files.length - queue.length;

    function show() {
      var seconds = (Date.now() - started) / 1000, speed = (arrived - startedWith) / Math.max(seconds, 0.001);
      var left = speed > 0 ? Math.round((total - arrived) / speed) : 0;
      bar.max = Math.max(total, 1);
      bar.value = arrived;
      figures.textContent = mb(arrived) + " of " + mb(total) + " · " + done + " of " + state.files.length + " files · " +
        mb(speed) + "/s · " + (left > 0 ? left + " s left" : "");
    }

    function one(item) {
      var file = byPath[item.path], offset = item.received;
      function next() {
        if (offset >= item.size && item.size > 0) { return Promise.resolve(); }
        var end = Math.min(offset + chunk, item.size);
        return api("PUT", url + "/" + state.id + "/" + item.index + "/" + offset, file.slice(offset, end), "application/octet-stream")
          .then(function (answer) {
            if (answer.status === 409 && answer.data.detail && typeof answer.data.detail.received === "number") {
              offset = answer.data.detail.received;  // the server says where it stands
              return next();
            }
            if (answer.status !== 200) { throw new Error(answer.data.error + ": " + JSON.stringify(answer.data.detail)); }
            arrived += answer.data.received - offset;
            offset = answer.data.received;
            show();
            return answer.data.result ? null : next();
          });
      }
      return next().then(function () { done += 1; show(); });
    }

    function worker() {
      var item = queue.shift();
      return item ? one(item).then(worker) : Promise.resolve();
    }
    show();
    var workers = [];
    for (var i = 0; i < PARALLEL; i++) { workers.push(worker()); }
    return Promise.all(workers);
  }

  function finished(state) {
    localStorage.removeItem(memoryKey);
    zone.querySelector(".upload-resume").hidden = true;
    var lines = [state.stored + " files stored"];
    if (state.broken.length) { lines.push(state.broken.length + " broken, not stored: " + state.broken.map(function (b) { return b.path; }).join(", ")); }
    if (state.skipped.length) { lines.push(state.skipped.length + " skipped: " + state.skipped.map(function (s) { return s.path; }).join(", ")); }
    (state.refused || []).forEach(function (r) { lines.push(r.path + " refused: " + r.why); });
    result.textContent = lines.join(" · ");
    if (window.htmx) { window.htmx.trigger(document.body, "dataset-changed"); }
  }

  /* the server checks (decodes) each image after its last chunk: wait until it says all are done */
  function checked(id) {
    return api("GET", url + "/" + id).then(function (answer) {
      if (answer.status !== 200) { throw new Error(answer.data.error || "the upload is gone"); }
      if (answer.data.complete) { return answer.data; }
      figures.textContent = "checking the images…";
      return new Promise(function (done) { setTimeout(done, 300); }).then(function () { return checked(id); });
    });
  }

  function upload(files) {
    if (!files.length) { return; }
    zone.querySelector(".upload-progress").hidden = false;
    result.textContent = "";
    opened(files)
      .then(function (state) { return send(state, files).then(function () { return state.id; }); })
      .then(checked)
      .then(finished)
      .catch(function (error) { result.textContent = "Upload stopped: " + error.message + ". Pick the same files again to resume."; });
  }

  zone.addEventListener("dragover", function (event) { event.preventDefault(); zone.classList.add("dragging"); });
  zone.addEventListener("dragleave", function () { zone.classList.remove("dragging"); });
  zone.addEventListener("drop", function (event) {
    event.preventDefault();
    zone.classList.remove("dragging");
    dropped(event.dataTransfer.items).then(upload);
  });
  zone.querySelectorAll("input[type=file]").forEach(function (input) {
    input.addEventListener("change", function () { upload(picked(input)); input.value = ""; });
  });
  zone.querySelector(".forget").addEventListener("click", function () {
    localStorage.removeItem(memoryKey);
    zone.querySelector(".upload-resume").hidden = true;
  });

  var kept = JSON.parse(localStorage.getItem(memoryKey) || "null");
  if (kept) {
    api("GET", url + "/" + kept.id).then(function (answer) {
      if (answer.status !== 200 || answer.data.complete) { localStorage.removeItem(memoryKey); return; }
      zone.querySelector(".resume-what").textContent = kept.files + " files, " + mb(answer.data.received) + " of " + mb(answer.data.bytes) + " arrived";
      zone.querySelector(".upload-resume").hidden = false;
    });
  }
})();
