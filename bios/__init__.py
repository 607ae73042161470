"""pyemu's built-in firmware: tiny ROM stubs whose services trap to Python."""
