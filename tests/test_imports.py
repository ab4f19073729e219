"""The modules of liif_core import each other without a cycle."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / 'liif_core'


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imports_of(path, modules):
    """The liif_core modules ``path`` imports, wherever the import statement stands."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                base = f'{anchor}.{base}' if base else anchor
            # `from pkg import mod` imports the module pkg.mod; `from mod import name`, mod.
            targets = [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base
                       for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def test_no_import_cycle():
    paths = {module_name(p): p for p in PACKAGE.rglob('*.py')}
    graph = {name: imports_of(path, paths) for name, path in paths.items()}
    assert 'liif_core.registry' in graph['liif_core.checkpoint']  # the graph sees real edges
    state = {}  # name -> 'open' while on the current path, 'done' once fully explored

    def visit(name, path):
        state[name] = 'open'
        for target in sorted(graph[name]):
            if state.get(target) == 'open':
                cycle = path[path.index(target):] + [target]
                raise AssertionError('import cycle: ' + ' -> '.join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[name] = 'done'

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_only_the_command_line_imports_argparse():
    """Library modules know nothing of the command line: argparse lives in liif_core.cli."""
    cli = PACKAGE / 'cli'
    offenders = []
    for path in PACKAGE.rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            if 'argparse' in names and cli not in path.parents:
                offenders.append(module_name(path))
    assert (cli / 'common.py').is_file() and offenders == []


def test_no_module_is_over_400_lines():
    """A module past 400 lines holds more than one concept: one of them gets its own module."""
    lengths = {module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob('*.py')}
    assert lengths['liif_core.liif'] > 100  # the package's real files were counted
    assert {name: n for name, n in lengths.items() if n > 400} == {}
