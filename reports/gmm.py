def write_report(table, cells, out, suite, description):
    return None
