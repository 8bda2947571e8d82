# Prints, for each bundled element of the installed diskimage-builder combined with an OS
# element, the expanded element names (sorted) or the exception class: one line per
# combination, `<element>\t<names|!Exception>`. Run with the pinned peer's python; used by
# tests/upstream_elements.rs.
import logging
import os
import sys

from diskimage_builder import element_dependencies as deps

logging.disable(logging.CRITICAL)
os_element = sys.argv[1]
path = os.environ["ELEMENTS_PATH"]
for name in sorted(os.listdir(path)):
    if not os.path.isdir(os.path.join(path, name)):
        continue
    try:
        # The OS element alone: requested twice, upstream expands it twice and fails, where
        # dib-core takes each requested element once (its first occurrence).
        requested = [name] if name == os_element else [name, os_element]
        found = deps._get_elements(requested, path)
        print(f"{name}\t{' '.join(sorted(e.name for e in found))}")
    except Exception as e:  # every failure is a result here
        print(f"{name}\t!{type(e).__name__}")
