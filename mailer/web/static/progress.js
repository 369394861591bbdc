// Live delivery progress on the issue page: polls the JSON the page was rendered from.
const box = document.getElementById("progress");
if (box) {
  const url = box.dataset.url;
  const update = async () => {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const data = await response.json();
    const counts = data.counts;
    const done = counts.sent + counts.failed + counts.bounced + counts.skipped + counts.cancelled;
    const total = data.recipients ?? 0;
    document.getElementById("progress-done").textContent = done;
    document.getElementById("progress-total").textContent = data.recipients ?? "…";
    const bar = document.getElementById("progress-bar");
    bar.max = total || 1;
    bar.value = done;
    for (const cell of document.querySelectorAll("[data-count]")) {
      cell.textContent = counts[cell.dataset.count] ?? 0;
    }
    const status = document.getElementById("issue-status");
    status.textContent = data.status.charAt(0).toUpperCase() + data.status.slice(1);
    status.className = `nhsuk-tag tm-status-${data.status}`;
    if (data.status === "sending") setTimeout(update, 1000);
  };
  if (box.dataset.status === "sending") setTimeout(update, 1000);
}
