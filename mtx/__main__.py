from mtx.cli import app

app(prog_name="mtx")
