"""The one exception the tool shows to people: a sentence saying what is wrong and what to do."""


class HomevisitsError(Exception):
    """Could not check or act: bad config, unreadable file, missing columns, no access.

    The message is one plain sentence for a school admin. The command line prints it on
    stderr without a traceback and exits with ``exit_code`` (2: could not check).
    """

    exit_code = 2
