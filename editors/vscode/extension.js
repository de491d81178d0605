// Starts `dnn lsp` (the command in the `dnn.server.command` setting) for .dnn files.
"use strict";
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const [command, ...args] = vscode.workspace
    .getConfiguration("dnn")
    .get("server.command", ["dnn", "lsp"]);
  client = new LanguageClient(
    "dnn",
    "dnn language server",
    { command, args },
    { documentSelector: [{ scheme: "file", language: "dnn" }, { scheme: "untitled", language: "dnn" }] }
  );
  context.subscriptions.push(client);
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
