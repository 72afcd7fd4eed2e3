// SimCSE demo page. Every server or corpus string is inserted with textContent, never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = "simcse-api-key";
  const keyInput = $("api-key");

  function headers() {
    const h = { "Content-Type": "application/json" };
    const key = keyInput.value.trim();
    if (key) h["X-API-Key"] = key;
    return h;
  }

  async function post(path, body) {
    const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
    let data = null;
    try {
      data = await response.json();
    } catch (e) {
      data = null;
    }
    if (!response.ok) {
      const message = data && data.error && data.error.message ? data.error.message : "HTTP " + response.status;
      throw new Error(message);
    }
    return data;
  }

  function say(element, text, kind) {
    element.textContent = text;
    element.className = kind || "";
  }

  function setSearchEnabled(enabled) {
    $("query").disabled = !enabled;
    $("top-k").disabled = !enabled;
    $("search-button").disabled = !enabled;
  }

  async function loadHealth() {
    try {
      const response = await fetch("health");
      const h = await response.json();
      const hasIndex = h.index_size > 0;
      const indexed = hasIndex ? h.index_size + " indexed sentences" : "no index loaded";
      say($("model-info"), "Model " + h.model + " (" + h.dim + " dimensions), " + indexed + ".");
      $("key-section").hidden = !h.api_key_required;
      setSearchEnabled(hasIndex);
      if (!hasIndex) {
        say($("search-status"), "No index is loaded: start the server with --index DIR to search.", "notice");
      }
    } catch (e) {
      say($("model-info"), "Cannot reach the server: " + e.message, "error");
    }
    document.body.dataset.ready = "true";
  }

  function showResults(hits) {
    const list = $("results");
    list.replaceChildren();
    for (const hit of hits) {
      const item = document.createElement("li");
      item.className = "result";
      const score = document.createElement("span");
      score.className = "score";
      score.dataset.score = String(hit.score);
      score.textContent = hit.score.toFixed(4);
      const track = document.createElement("span");
      track.className = "track";
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = Math.max(0, Math.min(100, Math.round(hit.score * 100))) + "%";
      track.append(bar);
      const sentence = document.createElement("span");
      sentence.className = "sentence";
      sentence.textContent = hit.sentence;
      item.append(score, track, sentence);
      list.append(item);
    }
  }

  $("search-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const query = $("query").value.trim();
    const status = $("search-status");
    if (!query) {
      say(status, "Type a sentence first.", "notice");
      return;
    }
    say(status, "Searching…");
    $("results").replaceChildren();
    try {
      const data = await post("search", { query: query, top_k: Number($("top-k").value) });
      showResults(data.results);
      say(status, data.results.length + " results, most similar first.", "done");
    } catch (e) {
      say(status, e.message, "error");
    }
  });

  $("similarity-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const a = $("sentence-a").value.trim();
    const b = $("sentence-b").value.trim();
    const out = $("similarity-result");
    if (!a || !b) {
      say(out, "Type two sentences.", "notice");
      return;
    }
    say(out, "Comparing…");
    delete out.dataset.score;
    try {
      const data = await post("similarity", { a: a, b: b });
      out.dataset.score = String(data.scores);
      say(out, "Cosine similarity: " + data.scores.toFixed(4), "done");
    } catch (e) {
      say(out, e.message, "error");
    }
  });

  keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
  keyInput.addEventListener("change", () => sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim()));
  setSearchEnabled(false);
  loadHealth();
})();
