// Shows the texts that EnhancerShowText and EnhancerUnload return ({"ui": {"text": [...]}}) in a read-only box on
// the node. ComfyUI serves this folder (WEB_DIRECTORY in __init__.py) at /extensions/<folder name>/.
import { app } from "../../scripts/app.js";

const SHOWS_TEXT = new Set(["EnhancerShowText", "EnhancerUnload"]);

function show(node, texts) {
  let widget = node.widgets?.find((w) => w.name === "shown");
  if (!widget) {
    widget = node.addWidget("text", "shown", "", () => {}, { multiline: true, serialize: false });
    widget.serialize = false; // a display, not an input: kept out of the saved workflow's widget values
  }
  widget.value = texts.join("\n\n---\n\n");
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "enhancer.ShowText",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!SHOWS_TEXT.has(nodeData.name)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      if (message?.text) show(this, message.text);
    };
  },
});
