-- Incidents along the route: when each was reported, when it was cleared and for how long.
SELECT
    incidentid AS incident,
    arbitrary(type) AS type,
    arbitrary(description) AS description,
    min(CASE WHEN status = 'Active' THEN "timestamp" END) AS reported,
    max(CASE WHEN status = 'Resolved' THEN "timestamp" END) AS resolved,
    date_diff(
        'minute',
        min(CASE WHEN status = 'Active' THEN "timestamp" END),
        max(CASE WHEN status = 'Resolved' THEN "timestamp" END)
    ) AS minutes_active
FROM smartcity.emergency_data
GROUP BY incidentid
ORDER BY reported, incident
