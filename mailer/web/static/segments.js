// Segment form: show only the values for the chosen field, and keep the count live as conditions change.
// Without JavaScript the form still works: every value list shows, and "Count people" reloads the page.
const form = document.getElementById("segment-form");

function showValuesFor(rule) {
  const field = rule.querySelector("[data-field]").value;
  const isDate = field === "subscribed_at" || field === "confirmed_at";
  rule.querySelectorAll("[data-values]").forEach((group) => {
    const kind = group.dataset.values;
    group.hidden = field === "" ? true : isDate ? kind !== "date" : kind !== field;
  });
  const op = rule.querySelector("[data-op]");
  op.querySelectorAll("option").forEach((option) => {
    const dateOp = option.value === "before" || option.value === "after";
    option.hidden = option.disabled = field !== "" && dateOp !== isDate;
  });
  if (op.selectedOptions[0] && op.selectedOptions[0].disabled) {
    op.value = isDate ? "before" : "in";
  }
}

let pending = null;
async function updateCount() {
  const out = document.getElementById("segment-count");
  const data = new FormData(form);
  try {
    const response = await fetch(form.dataset.countUrl, { method: "POST", body: data, credentials: "same-origin" });
    const body = await response.json();
    out.textContent = response.ok ? body.count.toLocaleString("en-GB") : "–";
  } catch (error) {
    out.textContent = "–";
  }
}

if (form) {
  form.querySelectorAll("[data-rule]").forEach((rule) => {
    showValuesFor(rule);
    rule.querySelector("[data-field]").addEventListener("change", () => showValuesFor(rule));
  });
  form.addEventListener("change", () => {
    clearTimeout(pending);
    pending = setTimeout(updateCount, 250);
  });
}
