"""Session-memory retrieval fixtures: 24 facts and one paraphrased question per fact."""

PAIRS: list[tuple[str, str]] = [
    (
        "Trending Rust repositories this week: tokio (30k stars) and ripgrep.",
        "Which Rust projects are popular on GitHub right now?",
    ),
    ("The design review with Bob is on Tuesday at 15:00 in room 4.", "When am I meeting Bob?"),
    (
        "The Q3 marketing budget is 1.2 million euros, up 10% from Q2.",
        "How much money does marketing get in the third quarter?",
    ),
    (
        "The user is vegetarian and allergic to peanuts.",
        "What food should I avoid ordering for the user?",
    ),
    (
        "Production deploys happen on Thursdays after the 10:00 stand-up.",
        "Which day do we ship to production?",
    ),
    (
        "The squares of 1 to 5 are 1, 4, 9, 16 and 25; the chart was plotted.",
        "What were the squared numbers we computed?",
    ),
    (
        "Postgres 18 adds asynchronous I/O for sequential scans.",
        "What is new in the latest Postgres release for disk reads?",
    ),
    (
        "The on-call engineer this week is Priya; escalate to Marco.",
        "Who should I page if the site goes down?",
    ),
    (
        "The office Wi-Fi password rotates on the first Monday of each month.",
        "How often does the wireless network key change?",
    ),
    ("Invoice 4471 from Acme Corp is overdue by 12 days.", "Which customer bill is late?"),
    ("The flight to Berlin leaves at 07:40 from gate B12.", "What time is my plane to Germany?"),
    (
        "The API rate limit for free tier users is 5 runs per minute.",
        "How many requests can a free account make?",
    ),
    (
        "Our largest customer churned because of slow support response times.",
        "Why did we lose the big client?",
    ),
    (
        "The Python service uses uv and a hashed lock file for installs.",
        "How are dependencies pinned in the backend?",
    ),
    (
        "Trending Go repositories today: caddy and hugo lead the list.",
        "What Go projects are hot on GitHub today?",
    ),
    (
        "The team offsite is planned in Porto for the second week of June.",
        "Where is the company retreat this summer?",
    ),
    (
        "Latency p99 of the search endpoint rose to 850 ms after the release.",
        "Did the search API get slower?",
    ),
    (
        "The contract with the cloud provider renews automatically in March.",
        "When does our hosting agreement come up for renewal?",
    ),
    (
        "Alice prefers dark mode and compact tables in the dashboard.",
        "How does Alice like her UI configured?",
    ),
    (
        "The data retention policy deletes idle threads after 30 days.",
        "How long do we keep old conversations?",
    ),
    (
        "The sandbox limits code to 5 CPU seconds and 1 GB of memory.",
        "What resources can executed code use?",
    ),
    ("Sales in the Nordics grew 18% year over year.", "How did revenue develop in Scandinavia?"),
    (
        "The GPU cluster is reserved for the training job until Friday.",
        "When can I use the accelerators again?",
    ),
    (
        "The French translation of the docs is 60% complete.",
        "How far along is the localisation into French?",
    ),
]
