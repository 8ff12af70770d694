"""The explorer: one self-contained HTML page for a run folder (``cnngraph explore``).

`build.collect` gathers the page's data (graphs and their layout, the views at each
replayed position, curves, confusion, mistakes); `page.render` turns it into HTML.
"""
