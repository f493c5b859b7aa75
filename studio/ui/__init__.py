"""The Gradio tabs: layout and event wiring only, one file per tab.

* :mod:`.enhance_tab`: upload, enhance, before/after, downloads (work in :mod:`studio.handlers`);
* :mod:`.compare_tab`: N models side by side, sliders, zoom, metrics (work in :mod:`studio.compare`);
* :mod:`.reader_tab`: the blinded reader (work in :mod:`studio.study.reading`);
* :mod:`.admin_tab`: create and run studies, export, analyse (work in :mod:`studio.study`, :mod:`studio.stats`).

:mod:`.render` turns cards, metadata and arrays into markdown and 8-bit images; :mod:`.examples`
provides the example images (shipped by registry packages, never downloaded).
"""
