// Starts the NHS.UK frontend's components (header menu, buttons, error summary). A file of our own rather than
// an inline script, so the Content-Security-Policy allows scripts from our origin only.
import { initAll } from "./nhsuk/nhsuk-frontend.min.js";

initAll();
