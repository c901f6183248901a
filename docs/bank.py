import threading

accounts = threading.Lock()
audit_log = threading.Lock()
both_hold_one = threading.Barrier(2)


def transfer():
    with accounts:
        both_hold_one.wait()
        with audit_log:
            pass


def audit():
    with audit_log:
        both_hold_one.wait()
        with accounts:
            pass


threading.Thread(target=transfer, name="transfer").start()
threading.Thread(target=audit, name="audit").start()
