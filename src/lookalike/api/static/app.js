// Lookalike search page: plain JS over the HTTP API, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const LIMIT = 24;

const state = {
  imageFile: null, // the query image (File or Blob), if any
  previewUrl: null,
  similarTo: null, // the product whose neighbours are shown
};

// --- API ---------------------------------------------------------------------------------
async function api(url, options = {}) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

// Clicks on results feed the search quality report (`lookalike report`); best effort.
function reportClick(searchId, productId, position) {
  if (!searchId) return;
  fetch("v1/events/click", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ search_id: searchId, product_id: productId, position }),
    keepalive: true,
  }).catch(() => {});
}

function filters() {
  const value = (id) => $(id).value.trim();
  const number = (id) => (value(id) === "" ? null : Number(value(id)));
  return {
    categories: value("filter-category") ? [value("filter-category")] : [],
    brands: value("filter-brand") ? [value("filter-brand")] : [],
    price_min: number("price-min"),
    price_max: number("price-max"),
  };
}

// The relevance floor is on unless the shopper asks for every hit (-1: no floor).
function qualityOptions() {
  const options = {};
  if (!$("floor-toggle").checked) options.min_score = -1;
  if ($("collapse-toggle").checked) options.collapse = "duplicates";
  return options;
}

function filterParams(f) {
  const params = new URLSearchParams({ limit: String(LIMIT) });
  for (const [key, value] of Object.entries(qualityOptions())) params.set(key, String(value));
  f.categories.forEach((c) => params.append("category", c));
  f.brands.forEach((b) => params.append("brand", b));
  if (f.price_min !== null) params.set("price_min", String(f.price_min));
  if (f.price_max !== null) params.set("price_max", String(f.price_max));
  return params;
}

async function loadFacets() {
  try {
    const facets = await api("v1/facets");
    fillSelect($("filter-category"), facets.category);
    fillSelect($("filter-brand"), facets.brand);
  } catch (error) {
    showError(`Could not load filters: ${error.message}`);
  }
}

function fillSelect(select, values) {
  for (const { value, count } of values) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = `${value} (${count})`;
    select.append(option);
  }
}

// --- searching ---------------------------------------------------------------------------
async function search() {
  const text = $("query-text").value.trim();
  const f = filters();
  leaveSimilar();
  if (!text && !state.imageFile) {
    setStatus("Type a description, add an image, or both.");
    renderResults([]);
    return;
  }
  let request;
  if (state.imageFile) {
    // Image, or image + text: the combined endpoint, as multipart.
    const query = { filters: f, limit: LIMIT, ...qualityOptions() };
    if (text) {
      query.text = text;
      query.image_weight = Number($("image-weight").value);
    }
    const form = new FormData();
    form.append("query", JSON.stringify(query));
    form.append("image", state.imageFile, state.imageFile.name || "query.png");
    request = api("v1/search", { method: "POST", body: form });
  } else {
    const params = filterParams(f);
    params.set("q", text);
    request = api(`v1/search/text?${params}`);
  }
  await show(request, "Searching…");
}

async function moreLikeThis(hit) {
  state.similarTo = hit;
  $("similar-thumb").src = hit.thumbnail_url;
  $("similar-title").textContent = hit.title || hit.id;
  $("similar-banner").hidden = false;
  const params = filterParams(filters());
  await show(api(`v1/products/${encodeURIComponent(hit.id)}/similar?${params}`), "Finding similar items…");
  window.scrollTo({ top: 0, behavior: "smooth" });
}

function leaveSimilar() {
  state.similarTo = null;
  $("similar-banner").hidden = true;
}

async function show(request, pending) {
  hideError();
  setStatus(pending);
  document.body.classList.add("busy");
  try {
    const data = await request;
    renderResults(data.results, data.search_id);
    const n = data.results.length;
    const hidden = data.below_floor || 0;
    if (n === 0 && hidden > 0) {
      setStatus(
        `No close matches. ${hidden} weaker items are hidden: untick "Close matches only" to see them.`,
      );
    } else if (n === 0) {
      setStatus("No matches. Try other words or fewer filters.");
    } else {
      setStatus(
        `${n} of ${data.total_found} matching items · ${data.query_time_ms.toFixed(1)} ms` +
          (hidden > 0 ? ` · ${hidden} weaker hidden` : ""),
      );
    }
  } catch (error) {
    renderResults([]);
    setStatus("");
    showError(error.message);
  } finally {
    document.body.classList.remove("busy");
  }
}

function renderResults(hits, searchId = null) {
  const list = $("results");
  const template = $("card-template");
  list.replaceChildren();
  for (const [index, hit] of hits.entries()) {
    const card = template.content.firstElementChild.cloneNode(true);
    card.dataset.id = hit.id;
    const img = card.querySelector("img");
    img.src = hit.thumbnail_url;
    img.alt = hit.title || hit.id;
    card.querySelector(".title").textContent = hit.title || hit.id;
    card.querySelector(".sub").textContent = [hit.category, hit.brand].filter(Boolean).join(" · ");
    card.querySelector(".price").textContent = hit.price === null ? "" : formatPrice(hit.price);
    card.querySelector(".score").textContent = `score ${hit.score.toFixed(3)}`;
    card.querySelector(".score").title = `cosine similarity ${hit.similarity.toFixed(4)}`;
    const duplicates = hit.duplicates || [];
    if (duplicates.length) {
      const badge = card.querySelector(".dups");
      badge.textContent = `+${duplicates.length} near-duplicate${duplicates.length > 1 ? "s" : ""}`;
      badge.title = duplicates.join(", ");
      badge.hidden = false;
    }
    for (const button of card.querySelectorAll(".thumb, .more")) {
      button.addEventListener("click", () => {
        reportClick(searchId, hit.id, index + 1);
        moreLikeThis(hit);
      });
    }
    list.append(card);
  }
}

const priceFormat = new Intl.NumberFormat(undefined, {
  minimumFractionDigits: 2,
  maximumFractionDigits: 2,
});

function formatPrice(price) {
  return priceFormat.format(price);
}

function setStatus(text) {
  $("status").textContent = text;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

// --- the query image: choose, drop or paste ----------------------------------------------
function setImage(file) {
  if (!file || !file.type.startsWith("image/")) {
    showError("That is not an image file.");
    return;
  }
  hideError();
  state.imageFile = file;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = URL.createObjectURL(file);
  $("query-preview").src = state.previewUrl;
  $("query-preview").hidden = false;
  $("dropzone-hint").hidden = true;
  $("clear-image").hidden = false;
  updateWeightControl();
  search();
}

function clearImage() {
  state.imageFile = null;
  if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
  state.previewUrl = null;
  $("query-preview").hidden = true;
  $("query-preview").removeAttribute("src");
  $("dropzone-hint").hidden = false;
  $("clear-image").hidden = true;
  $("image-input").value = "";
  updateWeightControl();
}

function updateWeightControl() {
  $("weight-control").hidden = !(state.imageFile && $("query-text").value.trim());
}

function firstImage(items) {
  for (const item of items || []) {
    const file = item.kind === undefined ? item : item.kind === "file" ? item.getAsFile() : null;
    if (file && file.type.startsWith("image/")) return file;
  }
  return null;
}

function wireImageInput() {
  const zone = $("dropzone");
  const input = $("image-input");
  zone.addEventListener("click", (event) => {
    if (event.target !== $("clear-image")) input.click();
  });
  zone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  input.addEventListener("change", () => input.files[0] && setImage(input.files[0]));
  $("clear-image").addEventListener("click", (event) => {
    event.stopPropagation();
    clearImage();
    search();
  });
  // Dropping anywhere on the page works; the zone lights up while something is dragged.
  for (const type of ["dragenter", "dragover"]) {
    document.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    document.addEventListener(type, () => zone.classList.remove("dragging"));
  }
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = firstImage(event.dataTransfer.files);
    if (file) setImage(file);
  });
  document.addEventListener("paste", (event) => {
    const file = firstImage(event.clipboardData && event.clipboardData.items);
    if (file) {
      event.preventDefault();
      setImage(file);
    }
  });
}

// --- start -------------------------------------------------------------------------------
function start() {
  wireImageInput();
  $("search-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search();
  });
  $("query-text").addEventListener("input", updateWeightControl);
  $("image-weight").addEventListener("input", () => {
    $("weight-value").textContent = Number($("image-weight").value).toFixed(2);
  });
  for (const id of ["filter-category", "filter-brand", "floor-toggle", "collapse-toggle"]) {
    $(id).addEventListener("change", () => (state.similarTo ? moreLikeThis(state.similarTo) : search()));
  }
  $("similar-close").addEventListener("click", search);
  loadFacets();
  const q = new URLSearchParams(window.location.search).get("q");
  if (q) {
    $("query-text").value = q;
    search();
  }
}

start();
