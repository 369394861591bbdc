// A running import's report page: polls its progress, and shows the whole report once it has ended.
const box = document.getElementById("import-progress");
if (box) {
  const url = box.dataset.url;
  const update = async () => {
    let data;
    try {
      const response = await fetch(url, { headers: { Accept: "application/json" } });
      if (!response.ok) return setTimeout(update, 5000);
      data = await response.json();
    } catch {
      return setTimeout(update, 5000);
    }
    if (data.status !== "queued" && data.status !== "running") {
      window.location.reload(); // the rows to look at are rendered by the server
      return;
    }
    document.getElementById("import-status").textContent = data.status === "queued" ? "Waiting for a worker" : "Importing";
    document.getElementById("import-rows").textContent = data.rows.toLocaleString("en-GB");
    document.getElementById("import-percent").textContent = data.progress.percent;
    document.getElementById("import-bar").value = data.progress.percent;
    for (const cell of box.querySelectorAll("[data-count]")) {
      cell.textContent = (data[cell.dataset.count] ?? 0).toLocaleString("en-GB");
    }
    setTimeout(update, 1000);
  };
  setTimeout(update, 1000);
}
