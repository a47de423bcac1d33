// Talking to the API at this origin's /api/. Every call sends the session's API key; a 401
// opens the key dialog and, once a key is saved, the same request is sent again.

import { getKey, promptForKey } from "./auth.js";

export class ApiError extends Error {
  constructor(status, message, type) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

const NETWORK_ERROR = "Cannot reach the Tandem server. Is it running?";

function authHeaders() {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** The API's error envelope {"error": {"message", "type"}}, or a plain status line. */
function errorFrom(status, statusText, bodyText) {
  try {
    const { error } = JSON.parse(bodyText);
    if (error && error.message) return new ApiError(status, error.message, error.type);
  } catch {
    // not JSON: a proxy's HTML error page, for instance
  }
  const fallback = {
    413: "the file is larger than the server accepts",
    502: "the API server cannot be reached",
    504: "the API server did not answer in time",
  };
  return new ApiError(status, fallback[status] || `${status} ${statusText || "error"}`, "http_error");
}

async function askForKeyAfter401() {
  return promptForKey(
    getKey()
      ? "The API key was not accepted. Enter a valid key."
      : "This Tandem API needs an API key.",
  );
}

/** JSON request to /api/<path>; resolves with the parsed body (null for 204). */
export async function api(path, { method = "GET", json, signal } = {}) {
  for (;;) {
    const headers = { Accept: "application/json", ...authHeaders() };
    let body;
    if (json !== undefined) {
      headers["Content-Type"] = "application/json";
      body = JSON.stringify(json);
    }
    let response;
    try {
      response = await fetch(`/api/${path}`, { method, headers, body, signal });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, NETWORK_ERROR, "network_error");
    }
    if (response.status === 401 && (await askForKeyAfter401())) continue;
    if (!response.ok) {
      throw errorFrom(response.status, response.statusText, await response.text());
    }
    return response.status === 204 ? null : response.json();
  }
}

function sendFile(file, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", "/api/documents");
    for (const [name, value] of Object.entries(authHeaders())) {
      request.setRequestHeader(name, value);
    }
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    request.addEventListener("load", () => resolve(request));
    request.addEventListener("error", () =>
      reject(
        new ApiError(
          0,
          "the upload was cut off: the server closed the connection " +
            "(the file may exceed its upload limit) or cannot be reached",
          "network_error",
        ),
      ),
    );
    request.addEventListener("abort", () => reject(new ApiError(0, "upload cancelled", "aborted")));
    const form = new FormData();
    form.append("files", file, file.name);
    request.send(form);
  });
}

/**
 * Upload one file as its own request, so each file has its own progress and its own error.
 * XMLHttpRequest because fetch cannot report upload progress.
 */
export async function uploadFile(file, onProgress) {
  for (;;) {
    const request = await sendFile(file, onProgress);
    if (request.status === 401 && (await askForKeyAfter401())) continue;
    if (request.status !== 202) {
      throw errorFrom(request.status, request.statusText, request.responseText);
    }
    return JSON.parse(request.responseText);
  }
}
