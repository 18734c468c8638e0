// Small DOM helpers: elements from tag, attributes and children; text is always text.

export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// A value as one line of text: strings as they are, the rest as JSON.
export function text(value) {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

// An event time as the tables show it (UTC, milliseconds).
export function shortTime(value) {
  return typeof value === 'string' ? value.replace('T', ' ').replace(/(\.\d{3})\d*/, '$1').replace(/(Z|\+00:00)$/, '') : text(value);
}

export function copyButton(get, label) {
  const button = el('button', { type: 'button', class: 'quiet small' }, label || 'Copy');
  button.addEventListener('click', async (event) => {
    event.stopPropagation();
    await navigator.clipboard.writeText(get());
    button.textContent = 'Copied';
    setTimeout(() => { button.textContent = label || 'Copy'; }, 1200);
  });
  return button;
}
