// Moving between the console's pages without reloading: the URL changes, the shell renders.

export function navigate(path, replace) {
  if (replace) history.replaceState(null, '', path);
  else history.pushState(null, '', path);
  window.dispatchEvent(new Event('logyard:route'));
}
