// SimCSE demo page. Every server or corpus string is inserted with textContent, never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const KEY_STORAGE = "simcse-api-key";
  const keyInput = $("api-key");
  let models = []; // the served models' names: one, or two side by side (serve --compare)

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
      const served = h.models || [{ name: h.model, dim: h.dim }];
      models = served.map((m) => m.name);
      const described = served.map((m) => m.name + " (" + m.dim + " dimensions)").join(" beside ");
      say($("model-info"), (served.length > 1 ? "Models " : "Model ") + described + ", " + indexed + ".");
      setUpColumns();
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

  // one ranking column per model; the first keeps id "results", the others "results-2", ...
  function setUpColumns() {
    const rankings = $("rankings");
    const first = rankings.querySelector(".ranking");
    rankings.replaceChildren(first);
    const heading = first.querySelector(".model-name");
    heading.hidden = models.length < 2;
    heading.textContent = models[0] || "";
    for (let i = 1; i < models.length; i++) {
      const column = document.createElement("div");
      column.className = "ranking";
      const title = document.createElement("h3");
      title.className = "model-name";
      title.textContent = models[i];
      const list = document.createElement("ol");
      list.id = "results-" + (i + 1);
      column.append(title, list);
      rankings.append(column);
    }
  }

  function resultList(i) {
    return $(i === 0 ? "results" : "results-" + (i + 1));
  }

  function showResults(list, hits) {
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
    const names = models.length ? models : [undefined];
    names.forEach((_, i) => resultList(i).replaceChildren());
    try {
      const topK = Number($("top-k").value);
      const answers = await Promise.all(names.map((name) => post("search", { query: query, top_k: topK, model: name })));
      answers.forEach((data, i) => showResults(resultList(i), data.results));
      say(status, answers[0].results.length + " results, most similar first.", "done");
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
      const names = models.length ? models : [undefined];
      const answers = await Promise.all(names.map((name) => post("similarity", { a: a, b: b, model: name })));
      out.dataset.score = String(answers[0].scores);
      out.dataset.scores = answers.map((d) => String(d.scores)).join(",");
      const parts = answers.map((d) => d.scores.toFixed(4) + (answers.length > 1 ? " (" + d.model + ")" : ""));
      say(out, "Cosine similarity: " + parts.join(", "), "done");
    } catch (e) {
      say(out, e.message, "error");
    }
  });

  // a white-to-blue cell per pair: 0 (or below) white, 1 the darkest blue
  function heatmap(name, sentences, scores) {
    const box = document.createElement("div");
    box.className = "heatmap-box";
    const title = document.createElement("h3");
    title.className = "model-name";
    title.textContent = name;
    const table = document.createElement("table");
    table.className = "heatmap";
    const head = document.createElement("tr");
    head.append(document.createElement("th"));
    sentences.forEach((_, j) => {
      const th = document.createElement("th");
      th.textContent = String(j + 1);
      head.append(th);
    });
    table.append(head);
    scores.forEach((row, i) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.textContent = i + 1 + ". " + sentences[i];
      th.title = sentences[i];
      tr.append(th);
      row.forEach((score) => {
        const td = document.createElement("td");
        const v = Math.max(0, Math.min(1, score));
        td.dataset.score = String(score);
        td.textContent = score.toFixed(2);
        td.style.background = "rgb(" + Math.round(255 - 244 * v) + "," + Math.round(255 - 172 * v) + "," + Math.round(255 - 107 * v) + ")";
        td.style.color = v > 0.6 ? "#fff" : "#1d1d1f";
        tr.append(td);
      });
      table.append(tr);
    });
    box.append(title, table);
    return box;
  }

  $("heatmap-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const sentences = $("heatmap-sentences").value.split("\n").map((x) => x.trim()).filter((x) => x);
    const status = $("heatmap-status");
    const out = $("heatmaps");
    if (sentences.length < 2) {
      say(status, "Type at least two sentences, one per line.", "notice");
      return;
    }
    say(status, "Computing…");
    out.replaceChildren();
    try {
      const names = models.length ? models : [undefined];
      const answers = await Promise.all(names.map((name) => post("similarity", { a: sentences, b: sentences, model: name })));
      answers.forEach((data) => out.append(heatmap(data.model, sentences, data.scores)));
      say(status, "Cosine similarity of every pair of the " + sentences.length + " sentences.", "done");
    } catch (e) {
      say(status, e.message, "error");
    }
  });

  keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
  keyInput.addEventListener("change", () => sessionStorage.setItem(KEY_STORAGE, keyInput.value.trim()));
  setSearchEnabled(false);
  loadHealth();
})();
