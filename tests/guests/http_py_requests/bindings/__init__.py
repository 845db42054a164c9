"""The layout requests-wasi-http looks for (`<root>.types.Err`, `<root>.imports.types`,
`<root>.imports.outgoing_handler`), over componentize-py 0.25.1's bindings, which name wasi:http's
types `wasi_http_types` beside wasi:filesystem's and keep `Err` in componentize_py_types."""
