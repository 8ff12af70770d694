"""The command line; only this package prints or exits.  The commands' table is
`cli.main`; the process's entry (``python -m cnngraph``, the ``cnngraph`` script) is
``cnngraph.__main__.entry``, which first takes over Ctrl-C (`cli.console.CtrlC`)."""
