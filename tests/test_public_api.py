import types

import infermeter
from tests.conftest import run_python


def test_all_is_the_public_api():
    # subpackages appear as attributes once anything imported them: they are not the public API
    public = {n for n in dir(infermeter) if not n.startswith("_") and not isinstance(getattr(infermeter, n), types.ModuleType)}
    public -= {"annotations"}
    assert set(infermeter.__all__) - {"__version__"} == public
    for name in infermeter.__all__:
        assert hasattr(infermeter, name)


def test_import_is_light():
    r = run_python(
        "import sys, infermeter\n"
        "heavy = [m for m in ('textual','fastapi','uvicorn','grpc','pynvml','aiohttp','duckdb','starlette') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == ""


def test_headless_packages_never_import_textual():
    r = run_python(
        "import sys, importlib, pkgutil, infermeter\n"
        "for m in pkgutil.walk_packages(infermeter.__path__, 'infermeter.'):\n"
        "    if '.tui' in m.name: continue\n"
        "    try: importlib.import_module(m.name)\n"
        "    except ImportError: pass\n"
        "print('textual' in sys.modules)"
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
