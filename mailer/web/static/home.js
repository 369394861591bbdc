// The home page's "Sending now" panel, kept live: while something is sending, ask for the panel again
// (admin.home_sending, the same template) and swap it in. Without JavaScript the page's refresh link does this.
const live = document.getElementById("sending-live");
if (live) {
  const seconds = Number(live.dataset.seconds) || 5;
  const active = () => live.querySelector("#sending-panel")?.dataset.active === "1";
  const refresh = async () => {
    try {
      const response = await fetch(live.dataset.url, { headers: { Accept: "text/html" } });
      if (response.ok) {
        const fragment = document.createRange().createContextualFragment(await response.text());
        live.replaceChildren(fragment);
      }
    } finally {
      if (active()) setTimeout(refresh, seconds * 1000);
    }
  };
  if (active()) setTimeout(refresh, seconds * 1000);
}
