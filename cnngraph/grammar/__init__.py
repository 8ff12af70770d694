"""The Lark grammar of the model language, shipped as package data of cnngraph.grammar."""
