"""The Lark grammar of the model language, installed as package data (cnngraph.grammar)."""
