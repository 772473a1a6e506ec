"""Typer commands: parse arguments, call a service, render. No logic worth testing lives here."""
