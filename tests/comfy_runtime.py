"""What ComfyUI does with a custom node pack and an API-format workflow, for tests without ComfyUI (it is not on PyPI,
so neither `pip install comfyui` nor its `execution.py` is available here): each function mirrors, in our own words,
the ComfyUI function named in its docstring, as read in ComfyUI's source in late 2026. None of ComfyUI's code is
copied.

    module = load_custom_node(tmp_path / "custom_nodes" / "enhancer")   # nodes.load_custom_node
    info = node_info(name, cls, display_names)                          # server.node_info, for GET /object_info
    valid, error, outputs, node_errors = validate_prompt(prompt, classes)  # execution.validate_prompt
    results, ui = execute(prompt, classes, outputs)                     # execution: map_node_over_list, lists
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path


def load_custom_node(module_path: Path, module_parent: str = "custom_nodes"):
    """nodes.load_custom_node for a package folder: the module is named after the folder's full path (dots made
    `_x_`), loaded from its __init__.py with importlib and put in sys.modules under that name; no sys.path change.
    Then WEB_DIRECTORY (relative to the folder) must be a folder to be served, and every NODE_CLASS_MAPPINGS class
    gets RELATIVE_PYTHON_MODULE. Returns the module; ComfyUI logs and skips a pack that raises, this raises."""
    module_path = str(module_path)
    sys_module_name = module_path.replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(sys_module_name, os.path.join(module_path, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[sys_module_name] = module
    spec.loader.exec_module(module)
    web = getattr(module, "WEB_DIRECTORY", None)
    if web is not None:
        module.web_dir = os.path.abspath(os.path.join(module_path, web))
        assert os.path.isdir(module.web_dir), f"WEB_DIRECTORY {web!r} is not a folder of {module_path}"
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
    assert mappings is not None, "ComfyUI skips a pack without NODE_CLASS_MAPPINGS (or comfy_entrypoint)"
    for cls in mappings.values():
        cls.RELATIVE_PYTHON_MODULE = f"{module_parent}.{os.path.basename(module_path)}"
    return module


def node_info(name: str, cls, display_names: dict) -> dict:
    """server.node_info: what GET /object_info tells the frontend about a V1 node class; json.dumps must take it."""
    inputs = cls.INPUT_TYPES()
    info = {
        "input": inputs,
        "input_order": {key: list(value) for key, value in inputs.items()},
        "is_input_list": getattr(cls, "INPUT_IS_LIST", False),
        "output": cls.RETURN_TYPES,
        "output_is_list": getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES)),
        "output_name": getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES),
        "name": name,
        "display_name": display_names.get(name, name),
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", "nodes"),
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": getattr(cls, "OUTPUT_NODE", False) is True,
    }
    json.dumps(info)  # the route answers JSON: a type it cannot encode breaks the whole node list
    return info


def types_match(received, expected) -> bool:
    """comfy_execution.validation.validate_node_input (not strict): equal, or comma-separated type sets that
    overlap, with "*" matching anything."""
    if received == expected:
        return True
    if not isinstance(received, str) or not isinstance(expected, str):
        return False
    got = {t.strip() for t in received.split(",")}
    want = {t.strip() for t in expected.split(",")}
    return "*" in got or "*" in want or bool(got & want)


def _error(kind: str, message: str, details: str) -> dict:
    return {"type": kind, "message": message, "details": details}


def validate_inputs(prompt: dict, node_id: str, classes: dict, validated: dict) -> tuple[bool, list[dict]]:
    """execution.validate_inputs: every required input given; a link is [node_id, slot] to a slot whose return
    type matches, and its node validates too; a value converts to INT/FLOAT/STRING/BOOLEAN, holds min and max, and
    is one of a combo's options. Inputs the class does not declare are ignored, as ComfyUI does; VALIDATE_INPUTS
    (which none of the nodes here define) is not modelled."""
    if node_id in validated:
        return validated[node_id]
    node = prompt[node_id]
    declared = classes[node["class_type"]].INPUT_TYPES()
    required, optional = declared.get("required", {}), declared.get("optional", {})
    errors, valid = [], True
    for name in {**required, **optional}:
        spec = required.get(name) or optional[name]
        kind, options = spec[0], (spec[1] if len(spec) > 1 else {})
        if name not in node["inputs"]:
            if name in required:
                errors.append(_error("required_input_missing", "Required input is missing", name))
            continue
        value = node["inputs"][name]
        if isinstance(value, list):
            if len(value) != 2:
                errors.append(_error("bad_linked_input", "Bad linked input, must be [node_id, slot_index]", name))
                continue
            source_id, slot = value
            received = classes[prompt[source_id]["class_type"]].RETURN_TYPES[slot]  # KeyError/IndexError: raises
            if not types_match(received, kind):
                errors.append(_error("return_type_mismatch", "Return type mismatch", f"{name}, {received} != {kind}"))
                continue
            if not validate_inputs(prompt, source_id, classes, validated)[0]:
                valid = False
            continue
        convert = (
            {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}.get(kind) if isinstance(kind, str) else None
        )
        try:
            value = convert(value) if convert else value
        except (TypeError, ValueError) as error:
            errors.append(_error("invalid_input_type", f"Failed to convert an input value to a {kind}", f"{error}"))
            continue
        if "min" in options and value < options["min"]:
            errors.append(_error("value_smaller_than_min", f"Value {value} smaller than min", name))
        elif "max" in options and value > options["max"]:
            errors.append(_error("value_bigger_than_max", f"Value {value} bigger than max", name))
        elif isinstance(kind, list) and value not in kind:
            errors.append(_error("value_not_in_list", "Value not in list", f"{name}: {value!r} not in {kind}"))
    validated[node_id] = (valid and not errors, errors)
    return validated[node_id]


def validate_prompt(prompt: dict, classes: dict) -> tuple[bool, dict | None, list[str], dict]:
    """execution.validate_prompt: every node has a registered class_type; the output nodes (OUTPUT_NODE is True)
    are found, none is "Prompt has no outputs"; each output validates with what it depends on. The prompt queues
    when at least one output validates (only those run); node_errors say what is wrong with the others."""
    outputs = []
    for node_id, node in prompt.items():
        if "class_type" not in node:
            return False, _error("invalid_prompt", "a node is missing the class_type property", node_id), [], {}
        cls = classes.get(node["class_type"])
        if cls is None:
            message = f"Cannot execute because node {node['class_type']} does not exist."
            return False, _error("invalid_prompt", message, f"Node ID '#{node_id}'"), [], {}
        if getattr(cls, "OUTPUT_NODE", False) is True:
            outputs.append(node_id)
    if not outputs:
        return False, _error("prompt_no_outputs", "Prompt has no outputs", ""), [], {}
    good, node_errors, validated = [], {}, {}
    for output in outputs:
        try:
            ok, _ = validate_inputs(prompt, output, classes, validated)
        except (KeyError, IndexError) as error:  # a link to a missing node or slot
            ok = False
            validated[output] = (False, [_error("exception_during_validation", "Exception", repr(error))])
        if ok:
            good.append(output)
        for node_id, (_, errors) in validated.items():
            if errors:
                node_errors.setdefault(node_id, {"errors": errors, "dependent_outputs": []})
                node_errors[node_id]["dependent_outputs"].append(output)
    if not good:
        return (
            False,
            _error("prompt_outputs_failed_validation", "Prompt outputs failed validation", ""),
            [],
            node_errors,
        )
    return True, None, good, node_errors


def _call(cls, obj, inputs: dict[str, list]) -> list:
    """execution.map_node_over_list: a node with INPUT_IS_LIST gets every input as a list in one call; any other
    node is called once per item of its longest input list, shorter ones repeating their last item."""
    function = getattr(obj, cls.FUNCTION)
    if getattr(cls, "INPUT_IS_LIST", False):
        return [function(**inputs)]
    if not inputs:
        return [function()]
    length = max(len(values) for values in inputs.values())
    return [function(**{k: v[min(i, len(v) - 1)] for k, v in inputs.items()}) for i in range(length)]


def execute(prompt: dict, classes: dict, outputs: list[str]) -> tuple[dict, dict]:
    """Runs `outputs` and what they depend on as ComfyUI's executor does: each input arrives as a list (a widget
    value as [value], a link as the source's output list); a returned {"ui", "result"} gives the node's UI and its
    outputs; an OUTPUT_IS_LIST slot's lists are joined, any other slot's values are one item per call. Returns each
    node's outputs (one list per slot) and the UI of the nodes that have one."""
    results, ui = {}, {}

    def run(node_id: str) -> list[list]:
        if node_id in results:
            return results[node_id]
        node = prompt[node_id]
        cls = classes[node["class_type"]]
        declared = cls.INPUT_TYPES()
        known = {**declared.get("required", {}), **declared.get("optional", {})}
        inputs = {}
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                inputs[name] = run(value[0])[value[1]]
            elif name in known:
                inputs[name] = [value]
        returned = _call(cls, cls(), inputs)
        rows, shown = [], {}
        for item in returned:
            if isinstance(item, dict):
                for key, values in item.get("ui", {}).items():
                    shown.setdefault(key, []).extend(values)
                if "result" in item:
                    rows.append(item["result"])
            else:
                rows.append(item)
        is_list = getattr(cls, "OUTPUT_IS_LIST", [False] * len(cls.RETURN_TYPES))
        results[node_id] = [
            [x for row in rows for x in row[slot]] if is_list[slot] else [row[slot] for row in rows]
            for slot in range(len(cls.RETURN_TYPES))
        ]
        if shown:
            ui[node_id] = shown
        return results[node_id]

    for output in outputs:
        run(output)
    return results, ui
