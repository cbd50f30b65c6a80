"""sdegen.tasks"""
