"""Prints the probe test classes that hold test methods (their own or a base
class's of the same module) but are not among the ctest entries named on
the command line as MODULE.CLASS; exits 1 if there are any."""
import ast
import pathlib
import sys

registered = set(sys.argv[1:])
missing = []
for path in sorted(pathlib.Path(__file__).parent.glob("test_*.py")):
    classes = {node.name: node for node in ast.parse(path.read_text()).body if isinstance(node, ast.ClassDef)}

    def has_tests(name, seen=()):
        node = classes.get(name)
        if node is None or name in seen:
            return False
        if any(isinstance(f, ast.FunctionDef) and f.name.startswith("test") for f in node.body):
            return True
        return any(isinstance(b, ast.Name) and has_tests(b.id, seen + (name,)) for b in node.bases)

    for name in classes:
        if has_tests(name) and "%s.%s" % (path.stem, name) not in registered:
            missing.append("probetests/%s: class %s" % (path.name, name))
for line in missing:
    print(line)
sys.exit(1 if missing else 0)
