#!/usr/bin/env python3
"""Size figures of src/: lines, the largest files, the longest functions, and the unwrap/expect
calls outside test code (fixed regexes counted apart). Read from the text; prints a table.

    python3 scripts/code-metrics.py [--top N] [SRC]
"""
import argparse
import os
import re

FN = re.compile(r'^(\s*)(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)')
UNWRAP = re.compile(r'\.(unwrap|expect)\(')


def rust_files(src):
    for folder, _, files in os.walk(src):
        for f in sorted(files):
            if f.endswith('.rs'):
                yield os.path.join(folder, f)


def code_before_tests(lines):
    """The lines before the first `#[cfg(test)]` (the test module comes last in this code base)."""
    for i, line in enumerate(lines):
        if line.strip() == '#[cfg(test)]':
            return lines[:i]
    return lines


def functions(path, lines):
    """(length, name, line) of each fn whose body closes at its own indentation."""
    out = []
    for i, line in enumerate(lines):
        m = FN.match(line)
        if not m:
            continue
        indent, name = m.group(1), m.group(2)
        j = i
        while j < len(lines) and not lines[j].rstrip().endswith(('{', ';')):
            j += 1
        if j >= len(lines) or lines[j].rstrip().endswith(';'):
            continue  # a declaration without a body
        k = j + 1
        while k < len(lines) and not (lines[k].startswith(indent + '}')
                                      and len(lines[k]) - len(lines[k].lstrip()) == len(indent)):
            k += 1
        out.append((k - i + 1, f'{path}:{i + 1}', name))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('src', nargs='?', default='src')
    ap.add_argument('--top', type=int, default=5)
    args = ap.parse_args()
    total = 0
    sizes, fns = [], []
    unwraps = regex_unwraps = 0
    for path in rust_files(args.src):
        lines = open(path, encoding='utf-8').read().split('\n')
        total += len(lines)
        sizes.append((len(lines), path))
        code = code_before_tests(lines)
        fns.extend(functions(path, code))
        for line in code:
            n = len(UNWRAP.findall(line))
            if n and 'Regex::new(' in line:
                regex_unwraps += n
            else:
                unwraps += n
    sizes.sort(reverse=True)
    fns.sort(reverse=True)
    print(f'lines in {args.src}/: {total}')
    print(f'files over 700 lines: {sum(1 for n, _ in sizes if n > 700)}')
    print(f'functions over 150 lines: {sum(1 for n, _, _ in fns if n > 150)}')
    print(f'unwrap/expect outside tests: {unwraps} (and {regex_unwraps} on fixed regexes)')
    print('largest files:')
    for n, p in sizes[:args.top]:
        print(f'  {n:5}  {p}')
    print('longest functions:')
    for n, where, name in fns[:args.top]:
        print(f'  {n:5}  {name}  {where}')


if __name__ == '__main__':
    main()
