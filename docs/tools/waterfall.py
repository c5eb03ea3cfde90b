#!/usr/bin/env python3
"""Renders one exported trace as a waterfall PNG.

The spans come from the OTLP receiver of the end-to-end tests:

    WHARF_TRACE_DUMP=/tmp/trace.jsonl cargo test -p wharf-e2e --test observability scaled
    python3 -m venv /tmp/wf && /tmp/wf/bin/pip install pillow
    /tmp/wf/bin/python docs/tools/waterfall.py /tmp/trace.jsonl docs/publish-trace.png

Each bar is a span, indented under its parent, coloured by the service that exported it.
"""
import json
import sys

from PIL import Image, ImageDraw, ImageFont

COLOURS = {"wharf-gateway": (52, 120, 198), "wharf-verifier": (214, 120, 38), "wharf-worker": (60, 160, 90)}
KINDS = {1: "internal", 2: "server", 3: "client", 4: "producer", 5: "consumer"}


def main(source, target):
    spans = [json.loads(line) for line in open(source) if line.strip()]
    by_id = {span["span_id"]: span for span in spans}
    children = {}
    for span in spans:
        children.setdefault(span["parent_span_id"] if span["parent_span_id"] in by_id else "", []).append(span)
    for siblings in children.values():
        siblings.sort(key=lambda span: span["start_unix_nano"])
    rows = []

    def walk(parent, depth):
        for span in children.get(parent, []):
            rows.append((span, depth))
            walk(span["span_id"], depth + 1)

    walk("", 0)
    start = min(span["start_unix_nano"] for span in spans)
    end = max(span["end_unix_nano"] for span in spans)
    total = max(end - start, 1)

    font = ImageFont.load_default()
    label_width, bar_width, row_height, top = 470, 620, 22, 56
    width = label_width + bar_width + 40
    height = top + row_height * len(rows) + 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    trace_id = spans[0]["trace_id"]
    draw.text((10, 8), f"One publish (twine-style upload) in scaled mode: trace {trace_id}", fill="black", font=font)
    draw.text((10, 24), f"{len(spans)} spans from {len({s['service'] for s in spans})} processes, {total / 1e6:.1f} ms in all", fill="black", font=font)
    for x, (service, colour) in enumerate(COLOURS.items()):
        draw.rectangle([label_width + x * 170, 10, label_width + x * 170 + 12, 22], fill=colour)
        draw.text((label_width + x * 170 + 18, 10), service, fill="black", font=font)
    for row, (span, depth) in enumerate(rows):
        y = top + row * row_height
        if row % 2 == 0:
            draw.rectangle([0, y - 2, width, y + row_height - 4], fill=(246, 246, 246))
        kind = KINDS.get(span["kind"], "")
        draw.text((10 + depth * 14, y + 2), f"{span['name']}  ({kind})", fill="black", font=font)
        x0 = label_width + (span["start_unix_nano"] - start) / total * bar_width
        x1 = label_width + (span["end_unix_nano"] - start) / total * bar_width
        colour = COLOURS.get(span["service"], (120, 120, 120))
        draw.rectangle([x0, y + 2, max(x1, x0 + 2), y + row_height - 6], fill=colour)
        duration = (span["end_unix_nano"] - span["start_unix_nano"]) / 1e6
        draw.text((min(max(x1, x0 + 2) + 4, width - 60), y + 2), f"{duration:.2f} ms", fill=(80, 80, 80), font=font)
    axis = top + row_height * len(rows) + 8
    draw.line([label_width, axis, label_width + bar_width, axis], fill="black")
    for tick in range(5):
        x = label_width + tick * bar_width / 4
        draw.line([x, axis, x, axis + 5], fill="black")
        draw.text((x - 10, axis + 8), f"{total / 1e6 * tick / 4:.1f} ms", fill="black", font=font)
    image.save(target)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
