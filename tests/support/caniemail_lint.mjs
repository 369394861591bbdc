// Lint email HTML with caniemail (npm `caniemail`, the data of caniemail.com), for tests/support/email_lint.py.
//
// stdin:  {"clients": ["gmail.*", ...], "emails": {"name": "<html>...", ...}}
// stdout: {"data": {"last_update_date": ...}, "emails": {"name": [{client, support, title, notes, where}, ...]}}
//
// `support` is "none" (caniemail: not supported) or "partial"; `where` says what in the email uses the feature:
// the opening tag of the element (with its inline style), or the rule of a <style> block. caniemail reports the
// position of a <style> block's rule relative to that block, so each block is linted on its own (as CSS) and the
// document without its blocks' contents (blanked to spaces, so every other position stays where it was).
import { readFileSync } from 'node:fs';
import { caniemail, rawData } from 'caniemail';

const request = JSON.parse(readFileSync(0, 'utf8'));
const STYLE = /(<style\b[^>]*>)([\s\S]*?)(<\/style>)/gi;

const offsetOf = (source, { line, column }) => {
  let offset = 0;
  for (let n = 1; n < line; n += 1) offset = source.indexOf('\n', offset) + 1;
  return offset + column - 1;
};

const excerpt = (source, position, until) => {
  if (!position) return null;
  const start = offsetOf(source, position.start);
  const end = until === '>' ? source.indexOf('>', start) + 1 : offsetOf(source, position.end) + 1;
  // The whole opening tag (an allowance's `where` may name an attribute after a long link), within reason.
  return source.slice(start, Math.min(end > start ? end : start + 200, start + 4000)).replace(/\s+/g, ' ').trim();
};

const found = (result, where) => {
  const out = [];
  for (const [kind, support] of [['errors', 'none'], ['warnings', 'partial']]) {
    for (const [client, issues] of result.issues[kind]) {
      for (const issue of issues) {
        out.push({ client, support, title: issue.title, notes: issue.notes, where: where(issue) });
      }
    }
  }
  return out;
};

const lint = (html, clients) => {
  const blocks = [...html.matchAll(STYLE)].map((m) => m[2]);
  const blanked = html.replace(STYLE, (_all, open, css, close) => open + css.replace(/[^\n]/g, ' ') + close);
  const issues = found(caniemail({ clients, html: blanked }), (issue) => excerpt(blanked, issue.position, '>'));
  for (const css of blocks) {
    if (!css.trim()) continue;
    const result = caniemail({ clients, css });
    issues.push(...found(result, (issue) => `<style> ${excerpt(css, issue.position, 'end') ?? issue.title}`));
  }
  return issues;
};

const emails = {};
for (const [name, html] of Object.entries(request.emails)) emails[name] = lint(html, request.clients);
process.stdout.write(JSON.stringify({ data: { last_update_date: rawData.last_update_date }, emails }));
