// The API key: typed once into a dialog, kept in this tab's sessionStorage (gone when the
// tab closes), sent as a Bearer token. Nothing secret is ever written into the page source.

const STORAGE_KEY = "tandem.apiKey";
let pendingPrompt = null;
const listeners = new Set();

export function getKey() {
  try {
    return sessionStorage.getItem(STORAGE_KEY) || "";
  } catch {
    return ""; // storage disabled: behave as if no key was given
  }
}

function storeKey(key) {
  if (key) sessionStorage.setItem(STORAGE_KEY, key);
  else sessionStorage.removeItem(STORAGE_KEY);
  for (const listener of listeners) listener(Boolean(key));
}

/** Called with `true`/`false` (a key is set or not) whenever the key changes. */
export function onKeyChange(listener) {
  listeners.add(listener);
}

/**
 * Ask for a key; resolves true once one is saved, false if the user cancels. Requests that
 * get 401 at the same time share one dialog.
 */
export async function promptForKey(reason) {
  return (await showDialog(reason)) === "saved";
}

/** Resolves with how the dialog closed: "saved", "cleared", "cancelled" or "". */
function showDialog(reason) {
  if (!pendingPrompt) {
    pendingPrompt = openDialog(reason).finally(() => {
      pendingPrompt = null;
    });
  }
  return pendingPrompt;
}

function openDialog(reason) {
  const dialog = document.getElementById("key-dialog");
  const input = document.getElementById("key-input");
  const reasonText = document.getElementById("key-dialog-reason");
  reasonText.textContent = reason || "";
  reasonText.hidden = !reason;
  input.value = "";
  document.getElementById("key-clear").hidden = !getKey();
  dialog.returnValue = "";
  if (!dialog.open) dialog.showModal();
  input.focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
  });
}

/**
 * Wire the dialog's buttons and the header's "API key" button; call once at start.
 * `onChangedByUser` runs when a key is saved or forgotten from the header button (a 401's
 * prompt instead retries the request that needed it).
 */
export function initKeyDialog(onChangedByUser) {
  const dialog = document.getElementById("key-dialog");
  const form = document.getElementById("key-form");
  const input = document.getElementById("key-input");
  const button = document.getElementById("key-button");
  const showState = (hasKey) => {
    button.textContent = hasKey ? "API key ✓" : "API key";
    button.setAttribute("aria-label", hasKey ? "API key (set)" : "API key (not set)");
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) {
      input.focus();
      return;
    }
    storeKey(key);
    dialog.close("saved");
  });
  document.getElementById("key-cancel").addEventListener("click", () => dialog.close("cancelled"));
  document.getElementById("key-clear").addEventListener("click", () => {
    storeKey("");
    dialog.close("cleared");
  });
  button.addEventListener("click", async () => {
    const closed = await showDialog(
      getKey() ? "A key is set for this tab; enter a new one to replace it." : "",
    );
    if (closed === "saved" || closed === "cleared") onChangedByUser();
  });
  onKeyChange(showState);
  showState(Boolean(getKey()));
}
