"""sdegen.training"""
