"""The commands about how a render looks, before any render: ``styles`` and their parameters, ``presets`` to
list, show or save, and ``lut`` to check a colour LUT or grade one image with it.
"""

from __future__ import annotations

import argparse
import json


def add_styles_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("styles", help="list styles and their parameters")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_styles)


def cmd_styles(args: argparse.Namespace) -> int:
    from core.config import schema
    from stylizers import STYLIZERS

    if args.json:
        print(json.dumps({n: {"description": c.description, "params": schema(c.Params)}
                          for n, c in STYLIZERS.items()}, indent=2))
        return 0
    for name, cls in STYLIZERS.items():
        print(f"{name}: {cls.description}" + (f" (needs {cls.requires})" if cls.requires else ""))
        for f in schema(cls.Params):
            rng = f" [{f['min']} .. {f['max']}]" if "min" in f else ""
            choices = f" ({' | '.join(map(str, f['choices']))})" if "choices" in f else ""
            help_ = f"  {f['help']}" if "help" in f else ""
            print(f"    {f['name']} = {f['default']!r}  ({f['type']}){rng}{choices}{help_}")
    return 0


def add_presets_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("presets", help="list, show or save presets")
    p.add_argument("action", choices=["list", "show", "save"])
    p.add_argument("name", nargs="?", default="balanced", help="preset to show, or name to save as")
    p.add_argument("--from", dest="base", default="balanced", help="preset to start from (save)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=cmd_presets)


def cmd_presets(args: argparse.Namespace) -> int:
    import yaml

    from core.config import to_dict
    from core.presets import apply_sets, list_presets, save_preset
    from core.render.spec import parse_sets
    from stylizers import checked_preset

    if args.action == "list":
        for name in list_presets():
            print(f"{name}: {checked_preset(name).description}")
    elif args.action == "show":
        print(yaml.safe_dump(to_dict(checked_preset(args.name)), sort_keys=False), end="")
    else:
        preset = apply_sets(checked_preset(args.base), parse_sets(args.sets))
        print(f"saved {save_preset(preset, args.name)}")
    return 0


def add_lut_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lut", help="check a LUT file, or grade an image with it")
    lut_sub = p.add_subparsers(dest="lut_action", required=True)
    q = lut_sub.add_parser("check", help="validate a LUT and print its kind, sizes, domain and behaviour")
    q.add_argument("lut", help=".cube file")
    q.set_defaults(func=cmd_lut)
    q = lut_sub.add_parser("apply", help="grade one image through the baked 8-bit LUT")
    q.add_argument("lut", help=".cube file")
    q.add_argument("input", help=".png or .jpg")
    q.add_argument("-o", "--output", required=True, help=".png or .jpg")
    q.set_defaults(func=cmd_lut)


def cmd_lut(args: argparse.Namespace) -> int:
    from core.color import apply_u8, bake_u8, read_lut, summarize

    lut = read_lut(args.lut)
    if args.lut_action == "check":
        print("\n".join(summarize(lut).lines()))
        return 0
    from core.video.stills import read_image, write_image

    rgb = read_image(args.input)
    out = write_image(args.output, apply_u8(bake_u8(lut), rgb))
    print(f"wrote {out} ({lut.name}, {rgb.shape[1]}x{rgb.shape[0]})")
    return 0
