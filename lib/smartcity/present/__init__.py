"""What people look at: charts, offline maps and the HTML report."""
