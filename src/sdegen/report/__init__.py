"""sdegen.report"""
