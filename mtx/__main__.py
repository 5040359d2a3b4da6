from mtx.cli.main import app

app(prog_name="mtx")
