import helper


def main():
    print(f"helper={helper.WORD}")
